//! `kube-testserver --port N`: serve the test Kubernetes API on 127.0.0.1 until killed.

use clap::Parser;

/// A Kubernetes API server for tests (discovery, server-side apply, watch).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Port on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Write a kubeconfig for the server to this file.
    #[arg(long)]
    kubeconfig: Option<std::path::PathBuf>,
    /// Simulate the cluster's controllers: PVCs bind, Deployments and StatefulSets roll out,
    /// InferenceServices and Rollouts turn ready, each at its latest generation.
    #[arg(long)]
    simulate_controllers: bool,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let server = kube_testserver::TestServer::builder()
        .port(args.port)
        .simulate_controllers(args.simulate_controllers)
        .start_blocking()?;
    if let Some(path) = &args.kubeconfig {
        server.write_kubeconfig(path)?;
    }
    println!("listening on {}", server.addr());
    // Serve until killed.
    loop {
        std::thread::park();
    }
}
