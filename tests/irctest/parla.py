"""irctest controller for Parla: starts a fresh `parla-server` for each test.

irctest (the IRC server conformance suite) imports this module by name
(`--controller parla`, with this folder on PYTHONPATH); `tests/irctest/run` does that. The
server binary is `$PARLA_SERVER`, or the release build of this checkout.
"""

import os
import subprocess
from pathlib import Path
from typing import Optional, Set, Type

from irctest.basecontrollers import BaseServerController, DirectoryBasedController
from irctest.runner import NotImplementedByController

REPO = Path(__file__).resolve().parents[2]


class ParlaController(BaseServerController, DirectoryBasedController):
    software_name = "Parla"
    supported_sasl_mechanisms: Set[str] = set()
    supports_sts = False

    def run(
        self,
        hostname: str,
        port: int,
        *,
        password: Optional[str],
        ssl: bool,
        run_services: bool,
        faketime: Optional[str],
        websocket_hostname: Optional[str],
        websocket_port: Optional[int],
    ) -> None:
        if websocket_hostname is not None or websocket_port is not None:
            raise NotImplementedByController("Websocket")
        if run_services:
            raise NotImplementedByController("services")
        assert self.proc is None
        self.port = port
        self.hostname = hostname
        self.create_config()
        assert self.directory
        binary = os.environ.get("PARLA_SERVER") or str(
            REPO / "target" / "release" / "parla-server"
        )
        args = [
            binary,
            "--server-name", "My.Little.Server",
            "--no-default-room",
            "--motd", "",
            # The suite is one machine talking fast: no per-address limits, no flood control,
            # no pacing (each is tested in Parla's own suites).
            "--trusted", "127.0.0.0/8",
            "--max-unregistered", "0",
            "--no-flood-control",
            "--room-bytes-per-second", "0",
            "--nick-changes", "1000",
            "--topic-changes", "1000",
            "--data-dir", str(self.directory / "history"),
        ]
        if password is not None:
            args += ["--password", password]
        # The suite's operator (irctest's convention): operuser / operpassword.
        hashed = subprocess.run(
            [binary, "hash-password"], input=b"operpassword\n",
            capture_output=True, check=True,
        ).stdout.decode().strip()
        with self.open_file("operators") as fd:
            fd.write(f"operuser {hashed}\n")
        args += ["--operators", self.directory / "operators"]
        if ssl:
            cert, key = self.directory / "cert.pem", self.directory / "key.pem"
            self.execute(
                [binary, "self-signed", "--cert", cert, "--key", key]
            ).wait()
            args += [
                "--tls-listen", f"{hostname}:{port}", "--tls-only",
                "--tls-cert", cert, "--tls-key", key,
            ]
        else:
            args += ["--listen", f"{hostname}:{port}"]
        # PARLA_IRCTEST_RUN (set by tests/irctest/run) marks the servers of one run, so that
        # the run can stop any a failed test left behind.
        self.proc = self.execute(args, env={**os.environ, "NO_COLOR": "1"})


def get_irctest_controller_class() -> Type[ParlaController]:
    return ParlaController
