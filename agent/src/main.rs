use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;

fn main() -> ExitCode {
    plinth::policy::without_huge_pages();
    let cli = match plinth_agent::cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    // The loop logs what it does by default; one-shot commands only warnings.
    let long_running = matches!(cli.command, plinth_agent::cli::Cmd::Run(_));
    // `kube_client` logs a failed connection as an ERROR of its own; the agent reports it
    // (naming the server) anyway: its lines only with `-v`.
    let default = if cli.verbose {
        "info"
    } else if long_running {
        "info,kube_client=off"
    } else {
        "warn,kube_client=off"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PLINTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .with_env_filter(filter);
    match cli.log_format {
        plinth_agent::cli::LogFormat::Text => logs.init(),
        plinth_agent::cli::LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // Each cause once (a message often repeats its source's already).
            eprintln!("error: {}", plinth_agent::chain(e.as_ref()));
            ExitCode::from(1)
        }
    }
}

fn run(cli: plinth_agent::cli::Cli) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let out = rt.block_on(plinth_agent::cli::run(cli))?;
    print!("{}", out.stdout);
    Ok(out.code)
}
