//! `colony bench`: runs [`colony_bench`] on the embedded bench agent (and the embedded
//! echo-tool) and prints the ratios; and the hidden subcommand that is the tool-call
//! measurement's subprocess baseline.
//!
//! A bench agent that fails an event (a limit hit on a loaded machine, a restart, a
//! quarantine) does not stop the bench: the measurements count what the agents handled and the
//! failures are listed after the figures (`agent_failures` in `--json`). What still fails the
//! bench is Colony's failure: agents that stop handling events without failing, lost events,
//! a wrong result.

use clap::Args;

use super::CliResult;
use colony_bench::BenchOptions;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Operations per round.
    #[arg(long, default_value_t = 2_000)]
    iterations: u32,
    /// Alternating rounds (the median is reported).
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Records appended in the audit throughput measurement.
    #[arg(long, default_value_t = 100_000)]
    audit_records: u64,
    /// Messages published in the bus fan-out measurement (each to 10 subscribers).
    #[arg(long, default_value_t = 50_000)]
    bus_messages: u64,
    /// Wasm agents subscribed to the replay in the market-data measurement.
    #[arg(long, default_value_t = 10)]
    market_agents: usize,
    /// Ticks timed in the orders measurement (tick → agent decision → risk → paper fill).
    #[arg(long, default_value_t = 20_000)]
    order_ticks: usize,
    /// Registered tool calls timed in the tool-call measurement (each a fresh instance).
    #[arg(long, default_value_t = 2_000)]
    tool_calls: usize,
    /// Subprocesses started in the tool-call measurement's baseline (one per call).
    #[arg(long, default_value_t = 200)]
    tool_spawns: usize,
    /// `python3 -c` processes started in the tool-call measurement's second baseline (0: skip).
    #[arg(long, default_value_t = 50)]
    python_spawns: usize,
}

/// `colony __bench-tool-subprocess`: the subprocess baseline of the tool-call measurement
/// (JSON arguments on stdin, `{"echo": ARGS}` on stdout). `cli::main` runs it before parsing
/// arguments, setting up logging or starting the runtime, as a cheap subprocess would; it is
/// not a user command, so clap and the help do not know it.
pub fn tool_subprocess() -> std::process::ExitCode {
    let (stdin, stdout) = (std::io::stdin(), std::io::stdout());
    match colony_bench::tool_subprocess_io(&mut stdin.lock(), &mut stdout.lock()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

pub async fn bench(args: BenchArgs) -> CliResult {
    let opts = BenchOptions {
        iterations: args.iterations.max(1),
        rounds: args.rounds.max(1),
        ..BenchOptions::default()
    };
    let results = colony_bench::run(colony_host::embedded::BENCH_AGENT, opts).await?;
    let audit_rate = colony_bench::audit_throughput(args.audit_records).await?;
    let bus =
        colony_bench::bus(colony_host::embedded::BENCH_AGENT, args.bus_messages, 2_000).await?;
    let market = colony_bench::market(
        colony_host::embedded::BENCH_AGENT,
        args.market_agents.max(1),
    )
    .await?;
    let orders =
        colony_bench::orders(colony_host::embedded::BENCH_AGENT, args.order_ticks.max(1)).await?;
    let echo_tool = colony_host::embedded::PLUGINS
        .iter()
        .find(|(name, _)| *name == "echo-tool.wasm")
        .map(|(_, bytes)| *bytes)
        .ok_or_else(|| anyhow::anyhow!("echo-tool is not embedded in this build"))?;
    let tool = colony_bench::tool_call(
        echo_tool,
        &colony_bench::ToolBenchOptions {
            calls: args.tool_calls.max(1),
            spawns: args.tool_spawns.max(1),
            python_spawns: args.python_spawns,
            subprocess: std::env::current_exe()
                .map_err(|e| anyhow::anyhow!("cannot find the colony binary to spawn: {e}"))?,
        },
    )
    .await?;
    let demo = colony_bench::demo().await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "ratios": results,
                "audit_records_per_sec": audit_rate,
                "audit_records_per_sec_target": 50_000,
                "bus": bus,
                "bus_fanout_per_sec_target": 500_000,
                "market": market,
                "market_deliveries_per_sec_target": 500_000,
                "orders": orders,
                "orders_tick_to_fill_p99_us_target": 100,
                "tool_call": tool,
                "demo": demo,
            }))?
        );
        return Ok(());
    }
    println!(
        "{:<30} {:>12} {:>12} {:>8} {:>8}",
        "measurement", "colony", "raw", "ratio", "target"
    );
    for m in &results {
        println!(
            "{:<30} {:>9.0} ns {:>9.0} ns {:>7.2}x {:>7.1}x {}",
            m.name,
            m.colony_ns,
            m.raw_ns,
            m.ratio,
            m.target,
            if m.ratio <= m.target { "ok" } else { "OVER" }
        );
    }
    println!(
        "{:<30} {:>12.0} records/s (SQLite, acknowledged; target >= 50000) {}",
        "audit store append",
        audit_rate,
        if audit_rate >= 50_000.0 {
            "ok"
        } else {
            "UNDER"
        }
    );
    println!(
        "{:<30} {:>12.0} deliveries/s to 10 wasm subscribers (native channels {:.0}/s; target >= 500000) {}",
        "bus fan-out",
        bus.fanout_per_sec,
        bus.native_fanout_per_sec,
        if bus.fanout_per_sec >= 500_000.0 {
            "ok"
        } else {
            "UNDER"
        }
    );
    println!(
        "{:<30} p50 {:.1} us, p99 {:.1} us to a wasm responder (native task: p50 {:.1} us, p99 {:.1} us)",
        "bus request/reply",
        bus.rpc_p50_us,
        bus.rpc_p99_us,
        bus.native_rpc_p50_us,
        bus.native_rpc_p99_us
    );
    println!(
        "{:<30} p50 {:.1} us, p99 {:.1} us, timed in the wasm requester (native task->task: p50 {:.1} us, p99 {:.1} us; p50 {:.1}x native)",
        "bus request/reply wasm->wasm",
        bus.wasm_rpc_p50_us,
        bus.wasm_rpc_p99_us,
        bus.native_task_rpc_p50_us,
        bus.native_task_rpc_p99_us,
        bus.wasm_rpc_p50_us / bus.native_task_rpc_p50_us
    );
    println!(
        "{:<30} {:>12.0} deliveries/s, {} events to {} wasm agents, lockstep as --speed max plays (target >= 500000) {}",
        "replay lockstep",
        market.lockstep_deliveries_per_sec,
        market.events,
        market.agents,
        if market.lockstep_deliveries_per_sec >= 500_000.0 {
            "ok"
        } else {
            "UNDER"
        }
    );
    println!(
        "{:<30} {:>12.0} deliveries/s, --speed fast: no lockstep, nothing dropped (native channels {:.0}/s; target >= 500000) {}",
        "replay fast",
        market.flow_deliveries_per_sec,
        market.native_deliveries_per_sec,
        if market.flow_deliveries_per_sec >= 500_000.0 {
            "ok"
        } else {
            "UNDER"
        }
    );
    println!(
        "{:<30} {:.0} ns with top-20 book and quote ({:.0} ns apply alone; BTreeMap insert {:.0} ns); publish {:.0} ns/event",
        "book update",
        market.book_update_ns,
        market.book_apply_ns,
        market.native_map_insert_ns,
        market.publish_ns
    );
    println!(
        "{:<30} p50 {:.1} us, p99 {:.1} us, max {:.0} us through a wasm agent, {} ticks (native calls: p50 {:.1} us, p99 {:.1} us; p50 {:.1}x native; target p99 <= 100 us) {}",
        "orders tick->fill",
        orders.tick_to_fill_p50_us,
        orders.tick_to_fill_p99_us,
        orders.tick_to_fill_max_us,
        orders.ticks,
        orders.native_p50_us,
        orders.native_p99_us,
        orders.tick_to_fill_p50_us / orders.native_p50_us,
        if orders.tick_to_fill_p99_us <= 100.0 {
            "ok"
        } else {
            "OVER"
        }
    );
    println!(
        "{:<30} {:.0} ns/order with every limit set ({:.0} ns without the order-rate limits); router place {:.0} ns/order (risk, paper fill, events)",
        "orders risk check", orders.risk_check_ns, orders.risk_check_no_rate_ns, orders.place_ns
    );
    println!(
        "{:<30} p50 {:.1} us, mean {:.1} us per call, {} calls, each a fresh instance (one `colony {}` subprocess per call: p50 {:.0} us, mean {:.0} us, {} spawns; {:.0}x at p50, {:.0}x mean; target >= {:.0}x) {}",
        "tool call vs subprocess",
        tool.tool.p50_us,
        tool.tool.mean_us,
        tool.tool.calls,
        colony_bench::TOOL_SUBPROCESS,
        tool.subprocess.p50_us,
        tool.subprocess.mean_us,
        tool.subprocess.calls,
        tool.ratio_p50,
        tool.ratio_mean,
        tool.target,
        if tool.ratio_p50 >= tool.target {
            "ok"
        } else {
            "UNDER"
        }
    );
    if let Some(f) = &tool.spawn_floor {
        println!(
            "{:<30} `true` per call, no input, no work: p50 {:.0} us, mean {:.0} us, {} spawns; {:.0}x at p50",
            "  spawn floor",
            f.p50_us,
            f.mean_us,
            f.calls,
            f.p50_us / tool.tool.p50_us
        );
    }
    match (&tool.python, tool.python_ratio_p50) {
        (Some(p), Some(ratio)) => println!(
            "{:<30} one `python3 -c` per call ({}): p50 {:.0} us, mean {:.0} us, {} spawns; {:.0}x at p50 (target >= {:.0}x) {}",
            "  same, python3 -c",
            tool.python_program.as_deref().unwrap_or("python3"),
            p.p50_us,
            p.mean_us,
            p.calls,
            ratio,
            tool.target,
            if ratio >= tool.target { "ok" } else { "UNDER" }
        ),
        _ => println!(
            "{:<30} skipped: {}",
            "  same, python3 -c",
            tool.python_skipped.as_deref().unwrap_or("no python3")
        ),
    }
    println!("{:<30} tool calls through {}", "", tool.via);
    println!(
        "{:<30} {:.2} s wall, {:.0} events/s: {} events to {} agents ({} deliveries, {} fills); same replay with no plugins {:.2} s, {:.0} events/s ({:.1}x the time)",
        "demo swarm, replay max",
        demo.wall_s,
        demo.events_per_sec,
        demo.events,
        demo.agents,
        demo.deliveries,
        demo.fills,
        demo.bare_wall_s,
        demo.bare_events_per_sec,
        demo.ratio
    );
    let failed: Vec<(&str, &String)> = [
        ("bus", &bus.agent_failures),
        ("market", &market.agent_failures),
        ("orders", &orders.agent_failures),
    ]
    .into_iter()
    .flat_map(|(what, lines)| lines.iter().map(move |l| (what, l)))
    .collect();
    if !failed.is_empty() {
        println!(
            "bench agents that failed events (the figures above count the events they handled; \
             a limit hit on a loaded machine is the agent's failure, not Colony's):"
        );
        for (what, line) in failed {
            println!("  {what}: {line}");
        }
    }
    Ok(())
}
