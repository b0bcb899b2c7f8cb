//! The printed report: one table per part, each figure next to its limit, the ratio, the target
//! and PASS/MISS. Figures, not assertions: a MISS does not change the exit code.

use crate::api_load::{ApiFigures, LoadResult, INSTANCES};
use crate::boot::{BootFigures, BootOptions, PROBE_EVERY};
use crate::launch::{concurrent_poll, ConcurrentFigures, LaunchFigures, MemSample, POLL};
use comfy_table::{presets, Table};
use std::time::Duration;

pub const LAUNCH_RATIO_TARGET: f64 = 1.05;
pub const BOOT_RATIO_TARGET: f64 = 1.05;
pub const CONCURRENT_RATIO_TARGET: f64 = 1.2;
pub const VIEW_RATE_TARGET: f64 = 20_000.0;
pub const KUMOD_IDLE_RSS_TARGET_MIB: f64 = 50.0;

/// Median, min and max.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

pub fn summarize(values: &[f64]) -> Summary {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return Summary { median: f64::NAN, min: f64::NAN, max: f64::NAN };
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    Summary { median, min: v[0], max: v[n - 1] }
}

pub fn secs(d: &[Duration]) -> Vec<f64> {
    d.iter().map(Duration::as_secs_f64).collect()
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

fn s(x: f64) -> String {
    format!("{x:.3} s")
}

fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::ASCII_MARKDOWN).set_header(header.iter().map(|h| h.to_string()));
    t
}

fn title(text: &str) {
    println!("\n## {text}\n");
}

/// Part 1.
/// How the guests of parts 1 and 2 are connected.
pub fn networks(with_nic: bool) -> &'static str {
    if with_nic {
        "every guest has a NIC: kumod's on a VPC subnet of its data plane (its namespace, DHCP, metadata), \
         raw QEMU's on a tap of a bridge with dnsmasq DHCP and the same metadata documents served by python3 http.server"
    } else {
        "--no-network: guests have no NIC (kumod without its data plane, raw QEMU without a tap)"
    }
}

pub fn launch(f: &LaunchFigures, accel: &str, with_nic: bool) {
    title("1. Launch latency");
    println!("Networks: {}.", networks(with_nic));
    println!(
        "One k1-nano instance of the tiny image at a time, accelerator {accel}, {} runs, kumod and raw interleaved.",
        f.kumod.len()
    );
    println!(
        "kumod: POST /v1/instances → \"kumo-guest: ready\" seen through GET …/serial-console (polled every {} ms).",
        POLL.as_millis()
    );
    println!(
        "raw:   spawn of qemu-system-x86_64 with kumod's command line → the line in its serial file (same poll).\n"
    );
    let (k, r) = (summarize(&secs(&f.kumod)), summarize(&secs(&f.raw)));
    let ratio = k.median / r.median;
    let mut t = table(&["figure", "median", "min", "max", "target", "verdict"]);
    let mut row = |what: &str, v: Summary| {
        t.add_row(vec![what.into(), s(v.median), s(v.min), s(v.max), String::new(), String::new()]);
    };
    row("kumod: API create → guest ready", k);
    if f.kumod_spawn.len() == f.kumod.len() {
        let boot: Vec<f64> = secs(&f.kumod).iter().zip(&f.kumod_spawn).map(|(total, spawn)| total - spawn).collect();
        row("  … of which API create → QEMU process started (±10 ms)", summarize(&f.kumod_spawn));
        row("  … of which QEMU process started → guest ready", summarize(&boot));
    }
    row("raw QEMU (limit): spawn → guest ready", r);
    t.add_row(vec![
        "ratio of medians kumod / raw".into(),
        format!("{ratio:.3}"),
        String::new(),
        String::new(),
        format!("≤ {LAUNCH_RATIO_TARGET}"),
        verdict(ratio <= LAUNCH_RATIO_TARGET).into(),
    ]);
    println!("{t}");
    println!("kumod overhead per launch (difference of medians): {:+.0} ms", (k.median - r.median) * 1000.0);
    if !f.kumod_cpu.is_empty() {
        let polls = summarize(&f.polls.iter().map(|&p| p as f64).collect::<Vec<_>>()).median;
        println!(
            "kumod CPU time per launch (median): {:.0} ms, serving about {polls:.0} serial-console polls among the rest",
            summarize(&f.kumod_cpu).median * 1000.0
        );
    }
}

/// `kumo-bench boot`: a real OS, create → SSH answers, against raw QEMU.
pub fn boot(f: &BootFigures, opts: &BootOptions) {
    title(&format!("Boot of a real OS: {} create → SSH answers", opts.image));
    println!(
        "{} ({} vCPU, {} MiB, {} GiB disk), accelerator {}, {} round(s), kumod and raw interleaved; \
         `ssh {}@ADDR true` with the create's key, a new probe at most every {} ms.",
        opts.instance_type,
        f.vcpus,
        f.memory_mib,
        f.disk_gib,
        f.accel,
        f.kumod.len(),
        f.user,
        PROBE_EVERY.as_millis()
    );
    println!("kumod: POST /v1/instances → SSH answers on the floating IP, from kumod's network namespace.");
    println!("raw:   spawn of qemu-system-x86_64 with kumod's command line, a tap on a bridge, dnsmasq DHCP → SSH answers.\n");
    let mut t = table(&["round", "kumod", "raw", "kumod / raw"]);
    for (i, (k, r)) in f.kumod.iter().zip(&f.raw).enumerate() {
        let (k, r) = (k.as_secs_f64(), r.as_secs_f64());
        t.add_row(vec![(i + 1).to_string(), s(k), s(r), format!("{:.3}", k / r)]);
    }
    println!("{t}\n");
    let (k, r) = (summarize(&secs(&f.kumod)), summarize(&secs(&f.raw)));
    let ratio = k.median / r.median;
    let mut t = table(&["figure", "median", "min", "max", "target", "verdict"]);
    t.add_row(vec!["kumod: create → SSH".into(), s(k.median), s(k.min), s(k.max), String::new(), String::new()]);
    if f.kumod_spawn.len() == f.kumod.len() {
        let sp = summarize(&f.kumod_spawn);
        let rest: Vec<f64> = secs(&f.kumod).iter().zip(&f.kumod_spawn).map(|(total, spawn)| total - spawn).collect();
        let rest = summarize(&rest);
        for (what, v) in
            [("  … of which create → QEMU process started (±10 ms)", sp), ("  … of which QEMU started → SSH", rest)]
        {
            t.add_row(vec![what.into(), s(v.median), s(v.min), s(v.max), String::new(), String::new()]);
        }
    }
    t.add_row(vec![
        "raw QEMU (limit): spawn → SSH".into(),
        s(r.median),
        s(r.min),
        s(r.max),
        String::new(),
        String::new(),
    ]);
    t.add_row(vec![
        "ratio of medians kumod / raw".into(),
        format!("{ratio:.3}"),
        String::new(),
        String::new(),
        format!("≤ {BOOT_RATIO_TARGET}"),
        verdict(ratio <= BOOT_RATIO_TARGET).into(),
    ]);
    println!("{t}");
    println!("kumod overhead per boot (difference of medians): {:+.1} s", k.median - r.median);
    let median = |v: &[f64]| summarize(v).median;
    if f.kumod_qemu_cpu.len() == f.kumod.len() && f.raw_qemu_cpu.len() == f.raw.len() {
        println!(
            "QEMU CPU time until SSH (median, all its threads): kumod's {:.1} s, raw {:.1} s",
            median(&f.kumod_qemu_cpu),
            median(&f.raw_qemu_cpu)
        );
    }
    if f.kumod_throttled.len() == f.kumod.len() {
        println!(
            "kumod's QEMU held back by its cgroup's CPU quota until SSH (median): {:.2} s",
            median(&f.kumod_throttled)
        );
    }
}

/// Part 2.
pub fn concurrent(
    k: &ConcurrentFigures,
    raw: &ConcurrentFigures,
    raw_single: &[Duration],
    cores: usize,
    with_nic: bool,
) {
    let n = k.each.len();
    title(&format!("2. {n} concurrent launches"));
    println!("Networks: {}.", networks(with_nic));
    println!(
        "{n} k1-nano (1 vCPU) instances created at once; each polled every {} ms (kumod: API, raw: serial file).",
        concurrent_poll(n).as_millis()
    );
    println!();
    let single = summarize(&secs(raw_single)).median;
    let limit = n as f64 * single / cores as f64;
    let ratio = k.wall.as_secs_f64() / limit;
    let mut t = table(&["figure", "value", "target", "verdict"]);
    t.add_row(vec![
        format!("kumod: first create → all {n} guests ready"),
        s(k.wall.as_secs_f64()),
        String::new(),
        String::new(),
    ]);
    if let Some(last) = k.spawned.iter().copied().reduce(f64::max) {
        t.add_row(vec![
            "  … of which first create → last QEMU started (±10 ms)".into(),
            s(last),
            String::new(),
            String::new(),
        ]);
    }
    t.add_row(vec![
        format!("limit: {n} × median raw single boot ({}) / {cores} cores", s(single)),
        s(limit),
        String::new(),
        String::new(),
    ]);
    t.add_row(vec![
        "ratio kumod / limit".into(),
        format!("{ratio:.3}"),
        format!("≤ {CONCURRENT_RATIO_TARGET}"),
        verdict(ratio <= CONCURRENT_RATIO_TARGET).into(),
    ]);
    t.add_row(vec![
        format!("context: {n} raw QEMUs at once, first spawn → all ready"),
        s(raw.wall.as_secs_f64()),
        String::new(),
        String::new(),
    ]);
    if let Some(last) = raw.spawned.iter().copied().reduce(f64::max) {
        t.add_row(vec![
            "  … of which first spawn → last QEMU started (±10 ms)".into(),
            s(last),
            String::new(),
            String::new(),
        ]);
    }
    t.add_row(vec![
        format!("context: kumod / {n} raw QEMUs at once"),
        format!("{:.3}", k.wall.as_secs_f64() / raw.wall.as_secs_f64()),
        String::new(),
        String::new(),
    ]);
    let (ke, re) = (summarize(&secs(&k.each)), summarize(&secs(&raw.each)));
    t.add_row(vec![
        "per guest, start → ready: median (min–max), kumod".into(),
        format!("{} ({:.1}–{:.1} s)", s(ke.median), ke.min, ke.max),
        String::new(),
        String::new(),
    ]);
    t.add_row(vec![
        "per guest, start → ready: median (min–max), raw".into(),
        format!("{} ({:.1}–{:.1} s)", s(re.median), re.min, re.max),
        String::new(),
        String::new(),
    ]);
    println!("{t}");
}

/// Part 3.
pub fn api(f: &ApiFigures, cores: usize) {
    title("3. API throughput");
    println!(
        "kumod --driver sim with {INSTANCES} instances; {} keep-alive HTTP/1.1 connections, 1 s warm-up, {} s measured.",
        f.connections, f.seconds
    );
    println!(
        "limit: the same load against a trivial axum server (separate process) answering the very bytes kumod answered."
    );
    println!(
        "NOTE: the load generator runs in kumo-bench on the same {cores} cores as the server under test; \
         every figure is server + client sharing the CPU.\n"
    );
    let mut t =
        table(&["request", "kumod req/s", "p50 / p99", "limit req/s", "p50 / p99", "ratio", "target", "verdict"]);
    let lat = |r: &LoadResult| format!("{:.2} / {:.2} ms", r.p50_us as f64 / 1000.0, r.p99_us as f64 / 1000.0);
    let row = |what: String, k: &LoadResult, l: &LoadResult, target: Option<f64>| {
        vec![
            what,
            format!("{:.0}", k.rate()),
            lat(k),
            format!("{:.0}", l.rate()),
            lat(l),
            format!("{:.3}", k.rate() / l.rate()),
            target.map(|t| format!("≥ {t:.0} req/s")).unwrap_or_default(),
            target.map(|t| verdict(k.rate() >= t).to_string()).unwrap_or_default(),
        ]
    };
    t.add_row(row(format!("GET view ({} B)", f.view_bytes), &f.view_kumod, &f.view_static, Some(VIEW_RATE_TARGET)));
    t.add_row(row(format!("GET list of {INSTANCES} ({} B)", f.list_bytes), &f.list_kumod, &f.list_static, None));
    println!("{t}");
    let errors = f.view_kumod.errors + f.view_static.errors + f.list_kumod.errors + f.list_static.errors;
    println!("errors (non-2xx or broken connections) during the measured windows: {errors}");
}

/// Part 4's inputs, whatever parts ran.
#[derive(Default)]
pub struct Memory {
    pub kumod_idle_start_kib: Option<u64>,
    pub kumod_idle_end_kib: Option<u64>,
    pub sim_kumod_loaded_kib: Option<u64>,
    pub single: Option<(Vec<MemSample>, Vec<MemSample>)>,
    pub concurrent: Option<(Vec<MemSample>, Vec<MemSample>)>,
}

pub fn memory(m: &Memory) {
    title("4. Memory");
    println!("VmRSS from /proc/PID/status. QEMU figures are taken when the guest prints its readiness line.");
    println!(
        "Resident guest RAM = the resident part of the anonymous mapping that holds the guest's memory (from \
         /proc/PID/smaps); QEMU's own memory is the rest of VmRSS; the TCG translation cache is its anonymous \
         executable mapping (absent under KVM).\n"
    );
    let mut t = table(&["figure", "value", "limit / comparison", "target", "verdict"]);
    if let Some(k) = m.kumod_idle_start_kib {
        let v = k as f64 / 1024.0;
        t.add_row(vec![
            "kumod (qemu driver) idle VmRSS after startup".into(),
            mib(k as f64),
            String::new(),
            format!("≤ {KUMOD_IDLE_RSS_TARGET_MIB} MiB"),
            verdict(v <= KUMOD_IDLE_RSS_TARGET_MIB).into(),
        ]);
    }
    if let Some(k) = m.kumod_idle_end_kib {
        t.add_row(vec![
            "kumod idle VmRSS after the launches (all deleted)".into(),
            mib(k as f64),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
    if let Some(k) = m.sim_kumod_loaded_kib {
        t.add_row(vec![
            format!("kumod (sim driver, {INSTANCES} instances) VmRSS after the API load"),
            mib(k as f64),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
    let mut qemu_rows = |label: &str, kumod: &[MemSample], raw: &[MemSample]| {
        if kumod.is_empty() || raw.is_empty() {
            return;
        }
        let med =
            |v: &[MemSample], f: fn(&MemSample) -> Option<f64>| summarize(&v.iter().filter_map(f).collect::<Vec<_>>());
        let guest = kumod[0].guest_mib;
        let mut row = |figure: String, value: String, comparison: String| {
            t.add_row(vec![format!("{label}: {figure}"), value, comparison, String::new(), String::new()]);
        };
        let (kr, rr) = (med(kumod, |m| Some(m.rss_kib as f64)), med(raw, |m| Some(m.rss_kib as f64)));
        row(
            "QEMU VmRSS, kumod-launched: median (max)".into(),
            format!("{} ({})", mib(kr.median), mib(kr.max)),
            format!("raw {} ({}); ratio {:.3}", mib(rr.median), mib(rr.max), kr.median / rr.median),
        );
        let (kb, rb) = (med(kumod, |m| Some(m.rss_minus_guest_mib())), med(raw, |m| Some(m.rss_minus_guest_mib())));
        row(
            format!("VmRSS − guest memory ({guest} MiB)"),
            format!("{:+.1} MiB", kb.median),
            format!("raw {:+.1} MiB", rb.median),
        );
        let (kg, rg) = (med(kumod, MemSample::guest_ram_mib), med(raw, MemSample::guest_ram_mib));
        let (ko, ro) = (med(kumod, MemSample::outside_guest_ram_mib), med(raw, MemSample::outside_guest_ram_mib));
        if kg.median.is_finite() && rg.median.is_finite() {
            row(
                format!("resident guest RAM (of {guest} MiB)"),
                format!("{:.1} MiB", kg.median),
                format!("raw {:.1} MiB", rg.median),
            );
            row(
                "QEMU's own memory (VmRSS − resident guest RAM)".into(),
                format!("{:.1} MiB", ko.median),
                format!("raw {:.1} MiB", ro.median),
            );
        }
        let (kt, rt) = (med(kumod, |m| Some(m.tcg_code_mib())), med(raw, |m| Some(m.tcg_code_mib())));
        row(
            "… of which TCG translation cache".into(),
            format!("{:.1} MiB", kt.median),
            format!("raw {:.1} MiB", rt.median),
        );
    };
    if let Some((k, r)) = &m.single {
        qemu_rows("one at a time", k, r);
    }
    if let Some((k, r)) = &m.concurrent {
        qemu_rows("all at once", k, r);
    }
    println!("{t}");
}

pub const VIEW_RATIO_TARGET: f64 = 0.5;
pub const LIST_RATIO_TARGET: f64 = 0.25;
pub const PAGE_MS_TARGET: f64 = 20.0;
pub const USAGE_MS_TARGET: f64 = 100.0;

/// The fast-read-paths part (issue 11): per backend, each figure beside its same-run ceiling or
/// its target.
pub fn reads(figures: &[crate::reads::ReadFigures]) {
    use crate::reads::{BIG_INSTANCES, PAGE, USAGE_INSTANCES};
    title("5. Fast read paths, SQLite and PostgreSQL");
    println!(
        "Per database: a sim kumod on it; GET view and GET list of {INSTANCES} under load (as in part 3) against \
         the trivial HTTP server's ceiling in the same run; then, sequential requests from one client, the first \
         page of {PAGE} of a project with {BIG_INSTANCES} instances (limit={PAGE}), and a month's usage of a \
         project with {USAGE_INSTANCES} instance lives in that month, 3 months of the same history before it and \
         1,000 instances running across the month's start (time from request to whole body).\n"
    );
    let mut t = table(&["database", "figure", "kumod", "limit (same run)", "ratio", "target", "verdict"]);
    let ms = |s: &Summary| format!("{:.1} ms ({:.1}–{:.1})", s.median, s.min, s.max);
    for f in figures {
        if let Some(a) = &f.api {
            let view_ok = a.view_kumod.rate() >= VIEW_RATE_TARGET
                || a.view_kumod.rate() / a.view_static.rate() >= VIEW_RATIO_TARGET;
            t.add_row(vec![
                f.backend.to_string(),
                format!("GET view ({} B), req/s", a.view_bytes),
                format!("{:.0}", a.view_kumod.rate()),
                format!("{:.0}", a.view_static.rate()),
                format!("{:.3}", a.view_kumod.rate() / a.view_static.rate()),
                format!("≥ {VIEW_RATE_TARGET:.0} req/s or ≥ {VIEW_RATIO_TARGET}"),
                verdict(view_ok).to_string(),
            ]);
            let list_ratio = a.list_kumod.rate() / a.list_static.rate();
            t.add_row(vec![
                f.backend.to_string(),
                format!("GET list of {INSTANCES} ({} B), req/s", a.list_bytes),
                format!("{:.0}", a.list_kumod.rate()),
                format!("{:.0}", a.list_static.rate()),
                format!("{list_ratio:.3}"),
                format!("≥ {LIST_RATIO_TARGET}"),
                verdict(list_ratio >= LIST_RATIO_TARGET).to_string(),
            ]);
        }
        if let Some(p) = &f.page {
            t.add_row(vec![
                f.backend.to_string(),
                format!("first page of {PAGE} of {BIG_INSTANCES} ({} KiB), median (min–max) of 20", p.bytes / 1024),
                ms(&p.ms),
                String::new(),
                String::new(),
                format!("≤ {PAGE_MS_TARGET:.0} ms"),
                verdict(p.ms.median <= PAGE_MS_TARGET).to_string(),
            ]);
        }
        if let Some(u) = &f.usage {
            t.add_row(vec![
                f.backend.to_string(),
                format!(
                    "usage of a month: {} lines, {:.1} MB; {} events in the project; median (min–max) of 10",
                    u.lines,
                    u.bytes as f64 / 1e6,
                    u.events
                ),
                ms(&u.ms),
                String::new(),
                String::new(),
                format!("≤ {USAGE_MS_TARGET:.0} ms"),
                verdict(u.ms.median <= USAGE_MS_TARGET).to_string(),
            ]);
            let row = |what: &str, value: String| {
                vec![
                    f.backend.to_string(),
                    what.to_string(),
                    value,
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                ]
            };
            t.add_row(row("  usage: the month's first request (builds its carry)", format!("{:.1} ms", u.first_ms)));
            t.add_row(row("  usage, in process: store read of the instance rows", ms(&u.store_ms)));
            t.add_row(row("  usage, in process: lines (all reads, fold, pricing)", ms(&u.lines_ms)));
            t.add_row(row("  usage, in process: JSON of the report", ms(&u.json_ms)));
        }
    }
    println!("{t}");
    let errors: u64 = figures
        .iter()
        .filter_map(|f| f.api.as_ref())
        .map(|a| a.view_kumod.errors + a.view_static.errors + a.list_kumod.errors + a.list_static.errors)
        .sum();
    println!("errors (non-2xx or broken connections) during the measured windows: {errors}");
}

pub const DECISIONS_TARGET: f64 = 10_000.0;
pub const CREATES_TARGET: f64 = 1_000.0;
pub const HEARTBEAT_CPU_TARGET: f64 = 10.0;
pub const UNREACHABLE_TARGET_SECS: f64 = 30.0;

/// `kumo-bench cluster` (issue 13, part 8): each figure beside its goal.
pub fn cluster(f: &crate::cluster::Figures) {
    use crate::cluster::PAGE;
    let o = &f.opts;
    title("Cluster scale: simulated hosts, two controllers on PostgreSQL");
    println!(
        "{} simulated hosts (sim driver, in kumo-bench, real join/heartbeat/agent API; one listener for all) in {} zones, joined in {:.1} s; two `kumod controller`s on a fresh PostgreSQL database; {} instances in the cloud ({} created through the API, the rest written into the database).
",
        o.hosts,
        o.zones,
        f.join_secs,
        o.instances,
        f.creates.ok
    );
    let mut t = table(&["figure", "value", "goal", "verdict"]);
    let d = &f.decisions;
    t.add_row(vec![
        format!("placement decision (scheduler alone, {} hosts, one zone asked), per second", o.hosts),
        format!("{:.0}", d.one_zone),
        format!("≥ {DECISIONS_TARGET:.0}/s"),
        verdict(d.one_zone >= DECISIONS_TARGET).into(),
    ]);
    t.add_row(vec![
        "  … any zone, per second".into(),
        format!("{:.0}", d.any_zone),
        format!("≥ {DECISIONS_TARGET:.0}/s"),
        verdict(d.any_zone >= DECISIONS_TARGET).into(),
    ]);
    t.add_row(vec![
        "  context: reading the candidate hosts from the store (every create does), median (min–max)".into(),
        format!("{:.1} ms ({:.1}–{:.1})", d.read_ms.median, d.read_ms.min, d.read_ms.max),
        String::new(),
        String::new(),
    ]);
    let c = &f.creates;
    let rate = c.ok as f64 / c.secs;
    t.add_row(vec![
        format!("creates through the API (POST → 201, both controllers, {} in flight), per second", o.concurrency),
        format!("{rate:.0} ({} in {:.1} s, {} refused)", c.ok, c.secs, c.failed),
        format!("≥ {CREATES_TARGET:.0}/s"),
        verdict(rate >= CREATES_TARGET && c.failed == 0).into(),
    ]);
    t.add_row(vec![
        "  context: first create → every created instance running".into(),
        match c.all_running_secs {
            Some(s) => format!("{s:.1} s ({:.0}/s)", c.ok as f64 / s),
            None => format!("not within the wait: {} of {} running", c.running, c.ok),
        },
        String::new(),
        String::new(),
    ]);
    for (ctl, ms, bytes) in &f.page {
        t.add_row(vec![
            format!(
                "GET /v1/instances first page of {PAGE} ({} KiB) of a project of {} ({} in the cloud), controller {ctl}, median (min–max) of 20",
                bytes / 1024,
                f.listed_project_instances,
                o.instances
            ),
            format!("{:.1} ms ({:.1}–{:.1})", ms.median, ms.min, ms.max),
            format!("≤ {PAGE_MS_TARGET:.0} ms"),
            verdict(ms.median <= PAGE_MS_TARGET).into(),
        ]);
    }
    let h = &f.heartbeat;
    let attributable = h.controllers_on - h.controllers_off;
    t.add_row(vec![
        format!(
            "heartbeat load: controllers' CPU with heartbeats minus without, {:.0} s windows ({:.0} heartbeats/s, \
             {} failed, mean {:.1} ms)",
            h.window_secs, h.rate, h.failed, h.mean_latency_ms
        ),
        format!("{attributable:.1} % of one core"),
        format!("< {HEARTBEAT_CPU_TARGET:.0} %"),
        verdict(attributable < HEARTBEAT_CPU_TARGET).into(),
    ]);
    for (what, v) in [
        ("  context: both controllers' CPU with heartbeats", h.controllers_on),
        ("  context: both controllers' CPU without heartbeats (background work)", h.controllers_off),
        ("  context: PostgreSQL's CPU with heartbeats (postgres processes alive at both ends; rough)", h.postgres_on),
        ("  context: PostgreSQL's CPU without heartbeats", h.postgres_off),
        ("  context: the fleet's CPU (kumo-bench) with heartbeats", h.fleet_on),
    ] {
        t.add_row(vec![what.into(), format!("{v:.1} % of one core"), String::new(), String::new()]);
    }
    let u = &f.unreachable;
    t.add_row(vec![
        format!("agent killed → host `unreachable` (its last heartbeat {:.1} s before)", u.last_ack_age),
        format!("{:.1} s", u.secs),
        format!("≤ {UNREACHABLE_TARGET_SECS:.0} s"),
        verdict(u.secs <= UNREACHABLE_TARGET_SECS).into(),
    ]);
    if let Some(s) = f.instances_task {
        t.add_row(vec![
            "  context: the last pass of the instances task (the background-work controller)".into(),
            format!("{s:.2} s"),
            String::new(),
            String::new(),
        ]);
    }
    println!("{t}");
    if let Some(e) = &c.first_error {
        println!("first refused create: {e}");
    }
}

pub const S3_LARGE_RATIO_TARGET: f64 = 0.9;

/// `kumo-bench s3` (issue 14): each case's rate through the endpoint beside the raw limit of the
/// same run.
pub fn s3(f: &crate::s3::Figures) {
    use crate::s3::{Op, CONCURRENCY, PART, SMALL_COUNT, SMALL_SIZE, THREADS};
    title("Object storage: S3 endpoint vs files on the same disk");
    println!(
        "{} round(s); median (min–max) of the rounds. kumo: boto3 (one process per operation, only the transfers \
         timed) against kumod's S3 endpoint on 127.0.0.1; large objects as multipart PUTs of {} MiB parts and ranged \
         GETs of {} MiB, {CONCURRENCY} in flight; {SMALL_COUNT} objects of {SMALL_SIZE} B by {THREADS} threads. \
         raw: the same bytes as files on the same filesystem with kumo-objects' policy (1 MiB writes to tmp/ID, \
         fsync, rename to blobs/XY/ID, directory fsync; per part, with the same parallelism), read back in 1 MiB \
         reads. Both sides read right after writing (page cache warm, caches not dropped). MB = 10^6 bytes. \
         CPU: seconds per round of kumod and of the client process during the kumo side.\n",
        f.runs,
        PART >> 20,
        PART >> 20
    );
    let mut t = table(&["case", "kumo", "raw limit (same run)", "ratio", "goal", "verdict", "kumod CPU", "client CPU"]);
    for c in &f.cases {
        let op = if c.op == Op::Put { "PUT" } else { "GET" };
        let what = if c.large() {
            format!("{op} one {} MiB object", c.size >> 20)
        } else {
            format!("{op} {} × {} KiB objects", c.objects, c.size >> 10)
        };
        let unit = if c.large() { "MB/s" } else { "objects/s" };
        let (k, r) = (summarize(&c.rates(&c.kumo_secs)), summarize(&c.rates(&c.raw_secs)));
        let ratio = k.median / r.median;
        let v = |s: Summary| format!("{:.0} {unit} ({:.0}–{:.0})", s.median, s.min, s.max);
        t.add_row(vec![
            what,
            v(k),
            v(r),
            format!("{ratio:.3}"),
            if c.large() { format!("≥ {S3_LARGE_RATIO_TARGET}") } else { "reported".into() },
            if c.large() { verdict(ratio >= S3_LARGE_RATIO_TARGET).into() } else { String::new() },
            format!("{:.2} s", summarize(&c.kumod_cpu).median),
            format!("{:.2} s", summarize(&c.client_cpu).median),
        ]);
    }
    println!("{t}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(summarize(&[3.0, 1.0, 2.0]), Summary { median: 2.0, min: 1.0, max: 3.0 });
        assert_eq!(summarize(&[4.0, 1.0, 2.0, 3.0]).median, 2.5);
        assert!(summarize(&[]).median.is_nan());
    }
}
