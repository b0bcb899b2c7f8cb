//! `kumo instance serial`: the guest's serial console log. The API returns the log as text from a
//! byte offset, with the offset to continue from in the `kumo-serial-next-offset` header;
//! `--follow` keeps asking from there every 500 ms until interrupted (Ctrl-C).

use crate::cli::ProjectArg;
use crate::Ctx;
use anyhow::{Context, Result};
use clap::Args;
use reqwest::header::HeaderMap;
use std::io::Write;
use std::time::Duration;

pub const NEXT_OFFSET_HEADER: &str = "kumo-serial-next-offset";
/// Set when the asked offset was older than what the server keeps (see docs/operations.md).
pub const SKIPPED_HEADER: &str = "kumo-serial-skipped-bytes";
const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, Args)]
pub struct SerialArgs {
    /// Instance name or id
    pub instance: String,
    #[command(flatten)]
    pub project: ProjectArg,
    /// Keep printing new output until interrupted
    #[arg(long, short = 'f')]
    pub follow: bool,
}

/// Prints the log (always as text, whatever `--output` says: it is not JSON).
pub fn run(ctx: &Ctx, args: &SerialArgs) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    let mut offset: Option<u64> = None;
    loop {
        let (chunk, next) = fetch(ctx, args, offset)?;
        match stdout.write_all(&chunk).and_then(|()| stdout.flush()) {
            Ok(()) => {}
            // The reader went away (`| head`): that is the end, not an error.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e).context("writing the serial log to stdout"),
        }
        offset = Some(next);
        if !args.follow {
            return Ok(());
        }
        std::thread::sleep(FOLLOW_INTERVAL);
    }
}

/// One read of the log from `offset`; returns the bytes and the offset to continue from.
fn fetch(ctx: &Ctx, args: &SerialArgs, offset: Option<u64>) -> Result<(Vec<u8>, u64)> {
    let offset_text = offset.map(|o| o.to_string());
    let mut query = vec![("project", args.project.project.as_str())];
    if let Some(o) = &offset_text {
        query.push(("offset", o.as_str()));
    }
    let (chunk, headers) = ctx.client.get_bytes(&["instances", &args.instance, "serial-console"], &query)?;
    // The log keeps only its newest bytes: say so when some we asked for were trimmed away.
    if let Some(skipped) = headers.get(SKIPPED_HEADER).and_then(|v| v.to_str().ok()) {
        eprintln!("[kumo: {skipped} older bytes of console output were trimmed; showing from the oldest kept]");
    }
    let next = next_offset(&headers, offset.unwrap_or(0), chunk.len());
    Ok((chunk, next))
}

/// The server's continuation offset; without the header, the bytes received advance it.
fn next_offset(headers: &HeaderMap, offset: u64, received: usize) -> u64 {
    headers
        .get(NEXT_OFFSET_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(offset + received as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Client;
    use crate::output::OutputFormat;
    use crate::testserver::{Reply, TestServer};

    #[test]
    fn continues_from_the_offset_the_server_gives() {
        let server = TestServer::start(|req| match req.query_param("offset").as_deref() {
            None => Reply::text(200, "boot\n").with_header(NEXT_OFFSET_HEADER, "5"),
            Some("5") => Reply::text(200, "login:").with_header(NEXT_OFFSET_HEADER, "11"),
            Some(other) => panic!("unexpected offset {other}"),
        });
        let ctx = Ctx { client: Client::new(&server.url(), "t").expect("client"), output: OutputFormat::Table };
        let args = SerialArgs { instance: "web1".into(), project: ProjectArg { project: "p".into() }, follow: false };
        let (first, next) = fetch(&ctx, &args, None).expect("first");
        assert_eq!((first.as_slice(), next), (b"boot\n".as_slice(), 5));
        let (second, next) = fetch(&ctx, &args, Some(next)).expect("second");
        assert_eq!((second.as_slice(), next), (b"login:".as_slice(), 11));
        let req = &server.requests()[0];
        assert_eq!(req.path, "/v1/instances/web1/serial-console");
        assert_eq!(req.query_param("project").as_deref(), Some("p"));
    }

    #[test]
    fn without_the_header_the_bytes_received_advance_the_offset() {
        assert_eq!(next_offset(&HeaderMap::new(), 100, 20), 120);
        let mut h = HeaderMap::new();
        h.insert(NEXT_OFFSET_HEADER, reqwest::header::HeaderValue::from_static("x"));
        assert_eq!(next_offset(&h, 7, 3), 10);
    }
}
