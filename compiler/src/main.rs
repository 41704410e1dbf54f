//! The `plinth` command: thin glue over the library's CLI module.

fn main() -> std::process::ExitCode {
    plinth::cli::main()
}
