# Parla's everyday commands. Install just with `pip install rust-just` (a prebuilt binary).

# Start the server on the defaults (0.0.0.0:8080); pass flags after, e.g. `just server --room #chat`.
server *ARGS:
    cargo run --release -p parla-net --bin parla-server -- {{ARGS}}

# Start the client (terminal mode for now); e.g. `just client 127.0.0.1 --name alice`.
client *ARGS:
    cargo run --release -p parla-gui --bin parla -- --headless {{ARGS}}

# Run every test (what CI runs after fmt and clippy).
test:
    cargo test --workspace

# Everything CI checks, in CI's order.
ci:
    bash .ci/run

# Run the simulation tests (the real server and client inside turmoil).
sim:
    cargo test -p parla-sim

