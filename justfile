# Parla's everyday commands. Install just with `pip install rust-just` (a prebuilt binary).

# Start the server on the defaults (0.0.0.0:8080); pass flags after, e.g. `just server --room #chat`.
server *ARGS:
    cargo run --release -p parla-net --bin parla-server -- {{ARGS}}

# The server with TLS on 6697 beside the plain port, with a throw-away self-signed certificate
# (made once in target/tls/; clients pin the fingerprint it prints).
server-tls *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    mkdir -p target/tls
    cargo build --release -p parla-net --bin parla-server
    if [ ! -f target/tls/cert.pem ]; then
        target/release/parla-server self-signed --cert target/tls/cert.pem --key target/tls/key.pem
    fi
    exec target/release/parla-server --tls-listen 0.0.0.0:6697 --tls-cert target/tls/cert.pem --tls-key target/tls/key.pem {{ARGS}}

# Start the desktop client; e.g. `just client 127.0.0.1 --name alice` (add --headless for the terminal).
client *ARGS:
    cargo run --release -p parla-gui --bin parla -- {{ARGS}}

# A local cluster: NATS with JetStream (Debian's nats-server) on 127.0.0.1:4222 and three Parla
# servers on ports 8081, 8082 and 8083, all one chat; Ctrl-C stops all four (by PID). State
# (NATS's store, logs) goes to target/cluster/. `apt install nats-server` first.
cluster:
    #!/usr/bin/env bash
    set -euo pipefail
    command -v nats-server >/dev/null || { echo "just cluster needs nats-server: sudo apt install nats-server" >&2; exit 1; }
    cargo build --release -p parla-net --bin parla-server
    dir=target/cluster; mkdir -p "$dir"
    pids=()
    stop() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; echo "cluster stopped"; }
    trap stop EXIT
    trap 'exit 0' INT TERM
    nats-server -js -a 127.0.0.1 -p 4222 -sd "$dir/nats" > "$dir/nats.log" 2>&1 & pids+=($!)
    for i in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null && break; sleep 0.1; done
    for n in 1 2 3; do
        target/release/parla-server --listen 127.0.0.1:808$n --cluster nats://127.0.0.1:4222 \
            --cluster-name parla-$n > "$dir/parla-$n.log" 2>&1 & pids+=($!)
    done
    echo "NATS on 127.0.0.1:4222; Parla on 127.0.0.1:8081, :8082, :8083 (logs in $dir); Ctrl-C stops them"
    wait -n "${pids[@]}" || true
    echo "a process of the cluster ended; see $dir/*.log" >&2

# Parla as one server and as clusters of one and three (NATS from Debian) under the same
# fan-out workload, with NATS's message counts; `just bench-cluster 3` takes three runs of each.
# Results go to target/bench/cluster-*.jsonl; see docs/benchmarks.md ("Cluster").
bench-cluster RUNS="1" *WORKLOAD:
    command -v nats-server >/dev/null || { echo "needs nats-server: sudo apt install nats-server" >&2; exit 1; }
    cargo build --release -p parla-net --bin parla-server -p parla-bench
    bench/run-cluster {{RUNS}} target/bench/cluster-$(date -u +%Y%m%dT%H%M%SZ).jsonl {{WORKLOAD}}

# Run every test (what CI runs after fmt and clippy).
test:
    cargo test --workspace

# The IRC conformance suite irctest (../shared/irctest) against a fresh release server per test;
# e.g. `just irctest -k Kick`. Fails below the target in tests/irctest/run.
irctest *ARGS:
    tests/irctest/run {{ARGS}}

# Everything CI checks, in CI's order.
ci:
    bash .ci/run

# Every simulation scenario, the CI-sized explorer run and the teeth tests.
sim:
    cargo test -p parla-sim

# A long exploration on every core: `just explore 5000 10000` runs seeds 10000..15000 (release
# build), with a progress line (seeds done, seeds/s, failures so far).
explore SEEDS="2000" START="0":
    cargo run --release -p parla-sim -- explore --seeds {{SEEDS}} --start {{START}} --progress

# Mutation testing of the server core's command handlers with the explorer alone as the test
# (hours on two cores; see docs/simulation.md): `just mutants rooms` for one file, `just mutants`
# for all of them, `just mutants client` for the client core. Needs `cargo install cargo-mutants --locked`. The report lands in mutants.out/.
mutants FILE="":
    #!/usr/bin/env bash
    set -euo pipefail
    files=()
    sel="{{FILE}}"
    if [ "$sel" = client ]; then
        files+=(--file 'crates/room/src/client/*.rs')
    else
        for f in ${sel:-commands registration rooms messaging queries leaving timers}; do
            files+=(--file "crates/room/src/server/$f.rs")
        done
    fi
    cargo mutants --jobs 2 --baseline=skip --timeout 240 --build-timeout 1800 "${files[@]}" \
        --test-package parla-sim -- --test explore -- --ignored --exact mutation_testing_exploration

# Replay one explored seed and print its script and transcript.
replay SEED:
    cargo run --release -p parla-sim -- replay --seed {{SEED}}

# Review changed simulation transcripts (needs `cargo install cargo-insta`).
review:
    cargo insta review

# The people are headless clients fed line by line; the window is typed into with xdotool. Uses
# the debug build: dependencies are optimised in it anyway, and it shares the test build's work.

# Save docs/screenshot.png: the window under Xvfb with a few people chatting (installs xvfb, imagemagick, xdotool).
screenshot:
    #!/usr/bin/env bash
    set -euo pipefail
    need=()
    command -v Xvfb >/dev/null || need+=(xvfb)
    command -v import >/dev/null || need+=(imagemagick)
    command -v xdotool >/dev/null || need+=(xdotool)
    if ((${#need[@]})); then
        sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
    fi
    cargo build -p parla-net --bin parla-server -p parla-gui --bin parla
    bin=target/debug
    work=$(mktemp -d)
    pids=()
    cleanup() {
        for fd in 3 4 5; do eval "exec $fd>&-" 2>/dev/null || true; done
        for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
        wait 2>/dev/null || true
        rm -rf "$work"
    }
    trap cleanup EXIT
    # A free port and a free display.
    port=18080
    while (exec 9<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
    display=99
    while [ -e "/tmp/.X$display-lock" ]; do display=$((display + 1)); done
    "$bin/parla-server" --listen "127.0.0.1:$port" --data-dir "$work/data" --motd "Welcome to Parla! Be kind." >"$work/server.log" 2>&1 &
    pids+=($!)
    until (exec 9<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.1; done
    Xvfb ":$display" -screen 0 1280x800x24 -nolisten tcp >"$work/xvfb.log" 2>&1 &
    pids+=($!)
    until [ -e "/tmp/.X11-unix/X$display" ]; do sleep 0.1; done
    export DISPLAY=":$display"
    # The others: terminal clients, one FIFO each for what they type.
    person() { # NAME FD
        mkfifo "$work/$1"
        "$bin/parla" --headless "127.0.0.1:$port" --name "$1" --no-ping <"$work/$1" >"$work/$1.log" 2>&1 &
        pids+=($!)
        eval "exec $2>\"$work/$1\""
        sleep 0.7
    }
    says() { echo "$2" >&"$1"; sleep 0.6; }
    ana() { xdotool type --delay 15 "$1"; xdotool key Return; sleep 0.6; }
    # Before ana arrives: what she will find in the room's history.
    person ben 3
    person chiara 4
    says 3 "Morning all! Has anyone tried the new desktop client yet?"
    says 4 "Not yet. Does it show what was said before you joined?"
    # The window, as "ana" (its title grows with the room and unread counts).
    "$bin/parla" "127.0.0.1:$port" --name ana >"$work/gui.log" 2>&1 &
    gui=$!
    wid=$(xdotool search --sync --name '^Parla' | head -n 1)
    xdotool windowfocus --sync "$wid"
    sleep 2
    person dmitri 5
    ana "It does: your messages above the line are from before I came in."
    says 4 "/me waves from the terminal client"
    says 3 "ana, the release notes are at https://example.org/parla/releases if you want them"
    says 5 "Long lines wrap instead of running off the side: the quick brown fox jumps over the lazy dog, again and again, until this line is long enough to need a second row in the window."
    says 3 "/msg ana are you coming to the meetup on Friday?"
    ana "/msg ben Yes! See you there."
    says 5 "/nick dima"
    says 4 "Nice. /help in the window lists the commands. 日本語も大丈夫 👍"
    says 3 "$(printf 'IRC styles from other clients show too: \x02bold\x02, \x1ditalic\x1d, \x0304red\x03, \x0300,03white on green\x03; escapes never act: \x1b[2J')"
    xdotool type --delay 15 "Typing a reply"
    sleep 1
    mkdir -p docs
    import -window "$wid" docs/screenshot.png
    # Leave the way a person would; the window closes by itself.
    xdotool key ctrl+a
    ana "quit"
    for _ in $(seq 50); do kill -0 "$gui" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$gui" 2>/dev/null; then
        echo "the window did not close within 10 s of typing quit" >&2
        exit 1
    fi
    code=0; wait "$gui" || code=$?
    echo "saved docs/screenshot.png (the window exited with $code)"

# Parla against ngircd and InspIRCd, same workloads, same run (installs the peers from apt if
# missing); prints one table with Parla/peer ratios. `just bench-peers 5` takes medians of 5 runs;
# `just bench-peers 5 "parla inspircd" steady-50k` runs only the servers and workloads named;
# `parla-tls` and `inspircd-tls` are the same servers over TLS only (self-signed, pinned):
# `just bench-peers 3 "parla parla-tls inspircd inspircd-tls" fanout-1000x10`.
# Results go to target/bench/*.jsonl; see docs/benchmarks.md.
bench-peers RUNS="1" SERVERS="parla parla-lobby ngircd inspircd" WORKLOADS="all":
    #!/usr/bin/env bash
    set -euo pipefail
    need=()
    command -v ngircd >/dev/null || need+=(ngircd)
    command -v inspircd >/dev/null || need+=(inspircd)
    if ((${#need[@]})); then
        sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
    fi
    cargo build --release -p parla-net --bin parla-server -p parla-bench
    bench=target/release/parla-bench
    mkdir -p target/bench
    out=target/bench/peers-$(date -u +%Y%m%dT%H%M%SZ).jsonl
    work=$(mktemp -d /tmp/parla-bench.XXXXXX)
    pid=""
    stop() {
        if [ -n "$pid" ]; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
            pid=""
        fi
    }
    trap 'stop; rm -rf "$work"' EXIT
    port=16700
    # Each workload gets a freshly started server, stopped by its PID afterwards.
    run() { # SERVER WORKLOAD ARGS…
        local server=$1 workload=$2; shift 2
        case " {{WORKLOADS}} " in *" all "*|*" $workload "*) ;; *) return 0 ;; esac
        while (exec 9<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
        bench/run-peer "$server" "$port" "$work"
        pid=$(cat "$work/$server.pid")
        # ngircd listens with a backlog of 10 and stalls with many registrations in flight;
        # InspIRCd completes registrations only on its once-a-second tick, so it needs many in
        # flight (docs/benchmarks.md). Parla takes either.
        local cc=1000; [ "$server" = ngircd ] && cc=50
        local common=(--addr "127.0.0.1:$port" --pid "$pid" --label "$server" --out "$out" --name "$workload" --connect-concurrency "$cc")
        if [ "$server" = parla-lobby ]; then common+=(--auto-join); fi
        case $server in *-tls) common+=(--tls-cert "$work/tls-cert.pem") ;; esac
        timeout 300 "$bench" "$@" "${common[@]}" || echo "!! $server $workload failed (exit $?)"
        stop
        port=$((port + 1))
    }
    for r in $(seq {{RUNS}}); do
        for s in {{SERVERS}}; do
            echo "== run $r: $s"
            run "$s" fanout-1000x10 fanout -c 1000 -s 10 -m 400
            run "$s" steady-50k fanout -c 1000 -s 10 -m 50 --rate 50
            # The same deliveries/s in a 100-member room: 10× the messages, a tenth of the fan-out.
            run "$s" steady-50k-100 fanout -c 100 -s 10 -m 500 --rate 500
            run "$s" idle-10000 idle -n 10000 --sources 4
            # InspIRCd's tick bounds its churn at (sessions in flight) per second.
            local_conc=50; case $s in inspircd*) local_conc=1000 ;; esac
            run "$s" churn-10000 churn --sessions 10000 --concurrency "$local_conc"
            case $s in parla*) run "$s" churn-100000 churn --sessions 100000 --warmup 10000 ;; esac
            case $s in parla-lobby) run "$s" room-10000 fanout -c 10000 -s 2 -m 20 --sources 4 ;; esac
        done
    done
    echo "results: $out"
    "$bench" table "$out" --baseline parla

# Fuzz one target with cargo-fuzz (libFuzzer, nightly) for SECONDS: server_lines (the server
# core fed any lines from three connections), client_lines (the client core against a hostile
# server), message_parse. Installs cargo-fuzz and the nightly toolchain if missing. Crashes
# land in fuzz/artifacts/TARGET/; the corpus grows in fuzz/corpus/TARGET/ from the hand-written
# seeds in fuzz/seeds/TARGET/ (kept in git; the corpus is not).
fuzz TARGET="server_lines" SECONDS="60":
    #!/usr/bin/env bash
    set -euo pipefail
    rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
    cd fuzz && mkdir -p corpus/{{TARGET}} && cargo +nightly fuzz run {{TARGET}} corpus/{{TARGET}} seeds/{{TARGET}} -- -max_total_time={{SECONDS}}
