//! Thin entry point: parse arguments, hand over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use workerpool_operator::{api, cli};

#[derive(Parser)]
#[command(
    name = "workerpool-operator",
    version,
    about = "Autoscale background workers from queue depth"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the WorkerPool CustomResourceDefinition as YAML.
    Crd,
    /// Replay a metric trace through the scaling decision; prints the replica timeline as CSV.
    Simulate {
        /// WorkerPool manifest (YAML; other documents in the file are ignored).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// CSV trace: header `time,<trigger name>,...`, one row per poll; an empty cell is a failed read.
        #[arg(long)]
        trace: PathBuf,
        /// Replicas at the start (default: minReplicas).
        #[arg(long)]
        start: Option<i32>,
        /// Also draw the timeline as an SVG chart.
        #[arg(long)]
        svg: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Crd => api::crd_yaml()
            .map_err(|e| e.to_string())
            .map(|y| print!("{y}")),
        Command::Simulate {
            file,
            trace,
            start,
            svg,
        } => simulate(&file, &trace, start, svg.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn simulate(
    file: &std::path::Path,
    trace_path: &std::path::Path,
    start: Option<i32>,
    svg: Option<&std::path::Path>,
) -> Result<(), String> {
    let (pool, policy) = cli::manifest::load(file).map_err(|e| e.to_string())?;
    let input =
        std::fs::File::open(trace_path).map_err(|e| format!("{}: {e}", trace_path.display()))?;
    let trace = cli::trace::parse(input).map_err(|e| format!("{}: {e}", trace_path.display()))?;
    let steps = cli::simulate::simulate(&policy, &trace, start.unwrap_or(policy.min_replicas))
        .map_err(|e| format!("{}: {e}", trace_path.display()))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    cli::simulate::write_csv(&mut out, &policy, &trace, &steps)
        .map_err(|e| format!("writing output: {e}"))?;
    std::io::Write::flush(&mut out).map_err(|e| format!("writing output: {e}"))?;
    if let Some(path) = svg {
        let name = pool.metadata.name.as_deref().unwrap_or("workerpool");
        let title = format!(
            "WorkerPool {name}: {} over {}",
            policy
                .triggers
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            trace_path.display()
        );
        std::fs::write(path, cli::svg::render(&title, &policy, &steps))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
