//! `batch-orchestra`: run workers for the built-in recipes and operate their jobs.
//!
//! `batch-orchestra --help` lists the commands; `batch-orchestra pipelines` lists the recipes.

fn main() -> std::process::ExitCode {
    batch_orchestra::cli::main(batch_orchestra::cli::recipes())
}
