//! The agent's failures outside a run, and how an error is shown with its causes.

/// Failures that stop the agent before or outside a run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file of the output tree could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The output tree is not a complete plinth build.
    #[error("{0}")]
    Tree(String),
    /// The inventory ConfigMap is unreadable.
    #[error("the inventory is unreadable: {0}")]
    Inventory(String),
    /// No usable kubeconfig.
    #[error("kubeconfig: {0}")]
    Config(String),
    /// Arguments that do not go together.
    #[error("{0}")]
    Usage(String),
}

/// An error with its causes, `: `-separated.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
