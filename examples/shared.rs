//! What the two demos share: the sample CSV, the job run with a live progress bar, the
//! summary and the collection check.

use std::io::Write;
use std::time::{Duration, Instant};

use batch_orchestra::batch::{JobReport, RequestOf};
use batch_orchestra::connectors::csv::CsvOffset;
use batch_orchestra::{JobClient, JobError, Pipeline, Worker};
use mongodb::bson::{Document, doc};

pub type Error = Box<dyn std::error::Error>;

/// Success when the demo ran and its check passed.
pub fn exit_code(outcome: Result<bool, Error>) -> std::process::ExitCode {
    match outcome {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("demo failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Writes `rows` people, with a few malformed rows at known lines.
pub fn sample_csv(path: &std::path::Path, rows: u64) -> Result<Vec<u64>, Error> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "id,first_name,last_name,email,city,signup_date,score")?;
    let cities = [
        "Lisbon",
        "Nairobi",
        "Osaka",
        "Lima",
        "Oslo",
        "Quebec, QC",
        "Perth",
    ];
    let malformed = [rows / 8, rows / 3, rows / 2 + 7, rows - 2];
    for i in 0..rows {
        if i == malformed[0] || i == malformed[3] {
            writeln!(out, "{i},only,three")?;
        } else if i == malformed[1] {
            out.write_all(format!("{i},Ren\u{e9},Bad,ren@example.com,").as_bytes())?;
            out.write_all(b"Montr\xE9al,2024-01-01,1\n")?;
        } else if i == malformed[2] {
            writeln!(out, "{i},Too,Many,many@example.com,Oslo,2024-01-01,1,extra")?;
        } else {
            let city = cities[(i % 7) as usize];
            let city = if city.contains(',') {
                format!("\"{city}\"")
            } else {
                city.to_owned()
            };
            writeln!(
                out,
                "{i},First{i},Last{},user{i}@example.com,{city},2024-{:02}-{:02},{}",
                i % 997,
                i % 12 + 1,
                i % 28 + 1,
                i * 37 % 1000
            )?;
        }
    }
    out.flush()?;
    Ok(malformed.iter().map(|i| i + 2).collect())
}

/// Starts the job, draws its progress until it ends, and returns its report.
pub async fn run_with_progress<P>(
    worker: &mut Worker,
    jobs: &JobClient,
    request: RequestOf<P>,
    total_bytes: u64,
) -> Result<JobReport<CsvOffset>, Error>
where
    P: Pipeline,
    P::Source: batch_orchestra::SourceConfig<Offset = CsvOffset>,
{
    let started = Instant::now();
    let report = worker
        .run_until(async {
            let handle = jobs.start::<P>(request).await?;
            let report = handle.report();
            tokio::pin!(report);
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tokio::select! {
                    done = &mut report => {
                        if let Ok(r) = &done {
                            draw(r, total_bytes, started.elapsed());
                        }
                        eprintln!();
                        break done;
                    }
                    _ = tick.tick() => {
                        if let Ok(p) = handle.progress().await {
                            draw(&p.report, total_bytes, started.elapsed());
                        }
                    }
                }
            }
        })
        .await?;
    report.map_err(|e: JobError| Box::new(e) as Error)
}

/// Prints the summary and checks the collection against it; true when they agree.
pub async fn summarize(
    report: &JobReport<CsvOffset>,
    rows: u64,
    collection: &mongodb::Collection<Document>,
) -> Result<bool, Error> {
    let secs = report.elapsed().as_secs_f64().max(0.001);
    println!();
    println!("Summary");
    println!("  rows read        {:>10}", report.records_read);
    println!("  rows written     {:>10}", report.records_written);
    println!("  already present  {:>10}", report.already_present);
    println!("  record errors    {:>10}", report.record_errors);
    for e in &report.error_samples {
        println!(
            "    line {:>7}: {}",
            e.position.line.unwrap_or_default(),
            e.message
        );
    }
    println!(
        "  batches          {:>10}   runs {}",
        report.batches, report.runs
    );
    println!("  status           {:>10}", report.status.to_string());
    println!("  failed batches   {:>10}", report.failed_batches);
    for f in &report.failed {
        println!("    {f}");
    }
    println!("  elapsed          {:>9.2}s", secs);
    println!(
        "  rows per second  {:>10.0}",
        report.records_read as f64 / secs
    );
    let documents = collection.count_documents(doc! {}).await?;
    let expected = report.records_written + report.already_present;
    let ok = documents == expected && report.records_read == rows && report.is_complete();
    println!(
        "Check: the collection `{}` holds {documents} documents; the report says {expected} written: {}",
        collection.namespace(),
        if ok { "OK" } else { "MISMATCH" }
    );
    Ok(ok)
}

pub fn draw(report: &JobReport<CsvOffset>, file_len: u64, elapsed: Duration) {
    let done = report.end_offset.map_or(0, |o| o.byte) as f64 / file_len.max(1) as f64;
    let width = 30;
    let filled = ((done * width as f64) as usize).min(width);
    let rate = report.records_read as f64 / elapsed.as_secs_f64().max(0.001);
    eprint!(
        "\r  [{}{}] {:>5.1}%  {:>9} rows  {:>8.0} rows/s  {} errors  {} failed batches ",
        "#".repeat(filled),
        " ".repeat(width - filled),
        done * 100.0,
        report.records_read,
        rate,
        report.record_errors,
        report.failed_batches
    );
}
