"""`python -m wavetyp.bench --profile`: instead of timings, torch.profiler over ~200 incremental
steps at B = 1 of each section's sampler (the reference too, for its op count) and over one
training step, printing the top ops and the share of the training step in matrix products."""
from __future__ import annotations

from wavetyp.benchmark.measure import Plan, log, timed
from wavetyp.benchmark.sections import SECTIONS_FOR, TITLES, BenchOptions, build_subject

GEMM_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::mkldnn_convolution",
            "aten::convolution_backward")


def profiler_activities(device: str) -> list:
    from torch.profiler import ProfilerActivity
    return [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if str(device).startswith("cuda") else [])


def profile_sampler(opts: BenchOptions, config: str) -> str:
    """torch.profiler over ~200 incremental steps at B = 1: wavetyp (and the reference)."""
    from torch.profiler import profile
    steps = 40 if opts.quick else 200
    acts = profiler_activities(opts.device)
    out = []
    for section in SECTIONS_FOR[config]:
        name, subj = TITLES[section], build_subject(section, opts)
        log(f"profile: {name}, {steps} incremental steps at B=1")
        subj.incremental(1, 20)                            # warm-up
        plain = timed(lambda: subj.incremental(1, steps), opts.device)
        with profile(activities=acts) as prof:
            subj.incremental(1, steps)
        ka = prof.key_averages()
        events = sum(e.count for e in ka)
        out.append(f"== {name}: {steps} steps at B=1, {1000 * plain / steps:.3f} ms/step without "
                   f"the profiler; {events / steps:,.0f} profiler op events per step (nested "
                   "ops included)")
        out.append(ka.table(sort_by="self_cpu_time_total", row_limit=15))
    return "\n".join(out)


def profile_training(opts: BenchOptions, config: str) -> str:
    """torch.profiler over one training step (batch 8 x 8000) after two warm-up steps, with
    the matrix products summed apart from everything else."""
    from torch.profiler import profile
    plan = Plan.quick() if opts.quick else Plan()
    B, T = plan.train_batch, plan.train_len
    acts = profiler_activities(opts.device)
    out = []
    for section in SECTIONS_FOR[config]:
        subj = build_subject(section, opts)
        step = subj.train_step(B, T)
        log(f"profile: {TITLES[section]}, one training step of {B} x {T}")
        step(), step()
        plain = timed(step, opts.device)
        with profile(activities=acts) as prof:
            step()
        ka = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in ka) / 1e6
        gemm = sum(e.self_cpu_time_total for e in ka if e.key in GEMM_OPS) / 1e6
        out.append(f"== {TITLES[section]}: training step {B} x {T}, {plain:.2f} s without the "
                   f"profiler; profiled {total:.2f} s of op time, of which matrix products / "
                   f"convolutions {gemm:.2f} s ({100 * gemm / max(total, 1e-9):.0f} %)")
        out.append(ka.table(sort_by="self_cpu_time_total", row_limit=15))
    return "\n".join(out)
