//! `parla`: the Parla chat client. `--headless` runs it in the terminal.

use clap::Parser;
use parla_gui::cli::Args;

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    if !args.headless {
        eprintln!(
            "parla: this build has only the terminal client; run `parla --headless [ADDR]` (the desktop window is not part of it yet)"
        );
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    let code = runtime.block_on(parla_gui::headless::run(args));
    // The stdin thread may still be blocked in read(): don't wait for it.
    runtime.shutdown_background();
    std::process::exit(code);
}
