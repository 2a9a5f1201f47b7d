//! `parla`: the Parla chat client. Opens a window; `--headless` runs it in the terminal.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use clap::Parser;
use eframe::egui;
use parla_gui::cli::Args;
use parla_gui::{AppConfig, ParlaApp};
use parla_net::IcmpPinger;

fn main() {
    let args = Args::parse();
    parla_net::process::init_logging("warn");
    let code = if args.headless {
        run_headless(args)
    } else {
        run_window(args)
    };
    std::process::exit(code);
}

fn run_headless(args: Args) -> i32 {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    let code = runtime.block_on(parla_gui::headless::run(args));
    // The stdin thread may still be blocked in read(): don't wait for it.
    runtime.shutdown_background();
    code
}

fn run_window(args: Args) -> i32 {
    let addr = match args.addr.as_deref().map(|text| args.parse_addr(text)) {
        Some(Err(err)) => {
            eprintln!("parla: {err}");
            return 2;
        }
        // As the window's address field shows it (ircs:// for TLS).
        Some(Ok(addr)) => Some(addr.to_string()),
        None => None,
    };
    let exit_code = Arc::new(AtomicI32::new(0));
    let flags = args.clone();
    let mut config = AppConfig::new(Box::new(move |addr| flags.client_config(addr)));
    config.addr = addr;
    config.name = args.name.clone();
    config.exit_code = exit_code.clone();
    config.notify = !args.no_notify;
    // Ctrl-C in the terminal: the network thread sends QUIT and the window closes (exit 0).
    config.interrupt = Some(Box::pin(async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No signal handling here: never fire rather than quit at once.
            std::future::pending::<()>().await;
        }
    }));
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Parla")
            .with_app_id("parla")
            .with_inner_size([960.0, 640.0])
            .with_min_inner_size([560.0, 380.0]),
        ..Default::default()
    };
    let started = eframe::run_native(
        "Parla",
        options,
        Box::new(move |cc| {
            Ok(Box::new(ParlaApp::new(
                &cc.egui_ctx,
                config,
                IcmpPinger::new,
            )))
        }),
    );
    match started {
        Ok(()) => exit_code.load(Ordering::SeqCst),
        Err(err) => {
            let err = err.to_string();
            eprintln!(
                "parla: could not open the window: {}. Without a display, use `parla --headless`.",
                err.trim_end_matches('.')
            );
            1
        }
    }
}
