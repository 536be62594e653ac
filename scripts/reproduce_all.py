r"""Runs every claim of the reproduction ledger (WORKSPACE.md) and writes one verdict table.

The studies and claims are data: `stable_training.studies.claims` (STUDIES: script, flags per scale, output
name; CLAIMS: paper, paper's number, metric, rule and thresholds, dataset, ledger rows) and
`stable_training.studies.verdicts` (the rules). Each run of a study at the scale runs as a subprocess of
``sys.executable`` with its flags, ``--out=DIR/<study>[/<run>]`` and ``--workdir_root`` in a temporary folder
(removed at exit); its stdout/stderr go to ``log.txt`` there, and its JSON is found by name
(``Study.output_stem``). Every claim is then judged from its runs' JSON (merged when several) into
``DIR/summary.md`` and ``DIR/summary.json``: claim · paper's number · ours · budget · dataset · verdict
(reproduced / partly / not reproduced / not run) · links to the study's table and figures. A run that fails
(non-zero exit, no JSON, or killed at ``--time_budget_s``) gives the claims reading it "not run" with the last
line of its log; the others still run, and the exit status is 1.

  python scripts/reproduce_all.py --scale=tiny               # smoke: 8 min on 2 busy CPU cores, temporary --out
  python scripts/reproduce_all.py --scale=quick              # ≈ 1–2 h on 2 CPU cores, temporary --out
  python scripts/reproduce_all.py --scale=full --out=DIR     # the ledger's decisive commands: ≈ a day on 2 CPU cores
  scripts/gpu_suite.sh OUTDIR                                # --scale=gpu on one H200, ≤ 9 min
  python scripts/reproduce_all.py --list                     # studies, runs, claims, rules with their thresholds
  python scripts/reproduce_all.py --scale=tiny --only=lsc_spectrum,roaf_memory

Scales (see `claims`): tiny, quick (the scripts' --tiny / --quick budgets), full (the ledger's decisive
commands), gpu (one H200, ``--jobs=4``, the studies longest first). ``--out`` defaults to a temporary folder
for tiny/quick (never results/) and to ``results/all_<scale>`` for full/gpu.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from stable_training.studies import claims as C
from stable_training.studies import verdicts as V

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULES_NOTE = ("Verdicts come from the rules in `stable_training/studies/verdicts.py` with the thresholds of "
              "`stable_training/studies/claims.py` (`python scripts/reproduce_all.py --list`).")

flags.DEFINE_enum("scale", "quick", list(C.SCALES), "Budget of every study (see the module doc).")
flags.DEFINE_string("out", None, "Output folder (default: temporary for tiny/quick, results/all_<scale> otherwise).")
flags.DEFINE_list("only", [], "Studies (or claims: their study) to run; default all (--list names them).")
flags.DEFINE_bool("list", False, "Print the studies, their runs and their claims with rules and thresholds; exit.")
flags.DEFINE_integer("jobs", 1, "Studies (runs of a study) run at once (gpu_suite.sh: 4).")
flags.DEFINE_float("time_budget_s", 0, "Kill studies still running after this many seconds and start no new "
                   "ones (their claims: not run); 0 = no limit.")
flags.DEFINE_string("data_dir", "", "Passed to every study as --data_dir (Fashion-MNIST's IDX folder).")
flags.DEFINE_string("workdir_root", None, "Keep the runs' workdirs here (default: a temporary folder, removed).")
FLAGS = flags.FLAGS


def job_name(study: str, run: str) -> str:
  """A run's name in the status and its folder under DIR: the study, or study/run for one of several runs."""
  return f"{study}/{run}" if run else study


def jobs_of(names: list[str], scale: str) -> list[tuple[str, str]]:
  """(study, run) of every run of the studies `names` at `scale`, in order."""
  return [(n, r) for n in names for r in C.STUDIES[n].run_flags(scale)]


def claim_jobs(c: C.Claim, scale: str) -> list[str]:
  """Job names whose JSONs claim `c` reads at `scale`."""
  return [job_name(c.study, r) for r in C.claim_runs(c, scale)]


def command(name: str, scale: str, out: str, workdir_root: str, data_dir: str = "", run: str = "") -> list[str]:
  """The subprocess command of study `name`'s run `run` ("": its single run) at `scale`."""
  s = C.STUDIES[name]
  rs = s.run_flags(scale)
  if run not in rs:
    raise ValueError(f"{name}: no run {run!r} at --scale={scale} (runs: {', '.join(map(repr, rs)) or 'none'})")
  return [sys.executable, os.path.join(ROOT, s.script), *(["--" + scale] if scale in ("tiny", "quick") else []),
          *rs[run], f"--out={out}", f"--workdir_root={workdir_root}", *(["--tag=gpu"] if scale == "gpu" else []),
          *([f"--data_dir={data_dir}"] if data_dir else [])]


def selected(only: list[str], scale: str | None = None) -> list[str]:
  """Study names from --only (study or claim names), in STUDIES order; all when empty. With `scale`, only the
  studies that run at it; naming one that does not is an error."""
  by_claim = {c.name: c.study for c in C.CLAIMS}
  bad = [n for n in only if n not in C.STUDIES and n not in by_claim]
  if bad:
    raise app.UsageError(f"--only: unknown {', '.join(bad)}; studies: {', '.join(C.STUDIES)}; claims: "
                         f"{', '.join(by_claim)}")
  want = {by_claim.get(n, n) for n in only}
  names = [n for n in C.STUDIES if not only or n in want]
  if scale is None:
    return names
  absent = [n for n in names if not C.STUDIES[n].run_flags(scale)]
  if only and absent:
    raise app.UsageError(f"--only: {', '.join(absent)} does not run at --scale={scale} (scales: "
                         f"{', '.join(C.STUDIES[absent[0]].scales)})")
  return [n for n in names if n not in absent]


def list_claims() -> str:
  """Papers; then per study its script, runs and claims: paper's number, metric, rule with its thresholds."""
  lines = ["Papers:", *(f"  {k}: {v}" for k, v in C.PAPERS.items()), ""]
  for name, s in C.STUDIES.items():
    only = "" if s.scales == C.SCALES else f" — {', '.join(s.scales)} only"
    lines.append(f"{name}  ({s.script}){only}")
    for sc in s.scales:
      runs = s.run_flags(sc)
      lines += [f"    {sc}: {' '.join(['--' + sc] * (sc in ('tiny', 'quick')) + f) or '(script defaults)'}"
                + (f"  [{r}]" if r else "") + f" → {C.json_name(s.output_stem(sc, r))}" for r, f in runs.items()]
    for c in (c for c in C.CLAIMS if c.study == name):
      lines += [f"  {c.name:18s} {c.claim}" + (" [full only]" if c.full_only else "")
                + (f" (full: reads {', '.join(c.runs)})" if c.runs else ""),
                f"      paper ({c.paper}): {c.paper_number} · dataset: {c.dataset}", f"      ours: {c.metric}",
                f"      rule {c.rule.__name__}: {c.rule_text()}  [thresholds: "
                + ", ".join(f"{k}={v:g}" for k, v in c.thresholds.items()) + "]",
                f"      full scale: {'; '.join(C.full_commands(c))}"
                + (" (the ledger's)" if c.decisive else " (not a ledger command)")]
  return "\n".join(lines)


def last_line(path: str) -> str:
  """The last non-empty line of a log (the error's message)."""
  try:
    with open(path, errors="replace") as f:
      lines = [l.strip() for l in f if l.strip()]
  except OSError:
    return ""
  return lines[-1][:300] if lines else ""


def find_outputs(out: str, study: str, scale: str, run: str = "") -> tuple[str | None, str | None, list[str]]:
  """(JSON, table, figures) of run `run` of `study` in its folder `out`: ``<stem>.json`` (`claims.json_name`) and
  ``<stem>.md`` by the run's output stem, the PNGs and the figures/ folder there (None: not written)."""
  stem = C.STUDIES[study].output_stem(scale, run)
  js, md = os.path.join(out, C.json_name(stem)), os.path.join(out, stem + ".md")
  figs = sorted(glob.glob(os.path.join(out, "*.png")))
  if os.path.isdir(os.path.join(out, "figures")):
    figs.append(os.path.join(out, "figures"))
  return (js if os.path.exists(js) else None), (md if os.path.exists(md) else None), figs


def _start(study: str, run: str, scale: str, out: str, wroot: str, data_dir: str):
  """Starts run `run` of `study` in its own process group, output to OUT/<job>/log.txt; returns (proc, t0, log,
  cmd)."""
  job = job_name(study, run)
  os.makedirs(os.path.join(out, job), exist_ok=True)
  cmd = command(study, scale, os.path.join(out, job), os.path.join(wroot, job), data_dir, run)
  log = open(os.path.join(out, job, "log.txt"), "w")
  proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
  return proc, time.time(), log, cmd


def _finish(job: tuple[str, str], scale: str, rc: int, t0: float, cmd: list[str], out: str, killed: bool,
            budget_s: float) -> dict:
  """The status of run `job` (study, run) that ended with exit status `rc`."""
  name = job_name(*job)
  st = {"rc": rc, "seconds": round(time.time() - t0, 1), "log": os.path.join(name, "log.txt"),
        "command": " ".join(["python", os.path.relpath(cmd[1], ROOT),
                             *(a for a in cmd[2:] if not a.startswith("--workdir_root="))])}
  if killed:
    return {**st, "status": "timed out", "error": f"stopped at the time budget ({budget_s:.0f} s)"}
  if rc != 0:
    return {**st, "status": "failed", "error": last_line(os.path.join(out, name, "log.txt")) or f"exit status {rc}"}
  js, md, figs = find_outputs(os.path.join(out, name), job[0], scale, job[1])
  want = C.json_name(C.STUDIES[job[0]].output_stem(scale, job[1]))
  return {**st, "status": "ok" if js else "failed", "json": js, "table": md, "figures": figs,
          "error": None if js else f"no JSON written ({want})"}


def _kill(proc, sig) -> None:
  """Sends `sig` to the process group of a study we started (the script and any workers it spawned)."""
  try:
    os.killpg(proc.pid, sig)
  except ProcessLookupError:
    pass


def _stop(proc) -> None:
  """SIGTERM to a run's process group, SIGKILL after 20 s."""
  _kill(proc, signal.SIGTERM)
  try:
    proc.wait(timeout=20)
  except subprocess.TimeoutExpired:
    _kill(proc, signal.SIGKILL)
    proc.wait()


def run_studies(names: list[str], scale: str, out: str, wroot: str, jobs: int, budget_s: float,
                data_dir: str) -> dict:
  """Runs every run of the studies, `jobs` at a time (longest study first at the gpu scale); returns {job:
  status}. With `budget_s` > 0, runs still going after `budget_s` seconds are stopped and those not started
  are skipped."""
  t_start = last_beat = time.time()
  todo = jobs_of(names, scale)
  todo = sorted(todo, key=lambda j: -C.STUDIES[j[0]].gpu_s) if scale == "gpu" else todo
  runs = {job_name(*j): j for j in todo}
  pending, running, status, total = list(runs), {}, {}, len(todo)
  say = lambda msg: print(f"[reproduce_all] {msg}", flush=True)
  try:
    while pending or running:
      over = 0 < budget_s < time.time() - t_start
      while pending and len(running) < jobs and not over:
        name = pending.pop(0)
        running[name] = _start(*runs[name], scale, out, wroot, data_dir)
        say(f"[{total - len(pending)}/{total}] {name}: {' '.join(running[name][3][1:])}")
      for name in pending if over else []:
        status[name] = {"status": "skipped", "error": f"time budget ({budget_s:.0f} s) spent before it started"}
        say(f"{name}: skipped (time budget spent)")
      pending = [] if over else pending
      time.sleep(0.5)
      for name, (proc, t0, log, cmd) in list(running.items()):
        killed = proc.poll() is None and over
        if killed:
          _stop(proc)
        if proc.poll() is None:
          continue
        log.close()
        del running[name]
        st = status[name] = _finish(runs[name], scale, proc.wait(), t0, cmd, out, killed, budget_s)
        say(f"{name}: {st['status']} in {st['seconds']:.0f} s" + (f" — {st['error']}" if st["status"] != "ok" else ""))
      if running and time.time() - last_beat >= 60:
        last_beat = time.time()
        say("running: " + ", ".join(f"{n} ({time.time() - r[1]:.0f} s)" for n, r in running.items())
            + f"; {time.time() - t_start:.0f} s in all")
  finally:  # interrupted (Ctrl-C, SIGTERM): stop the studies still running
    for proc, *_ in running.values():
      if proc.poll() is None:
        _kill(proc, signal.SIGKILL)
  return status


def _describe(fn, datas: list[dict]) -> str:
  """`fn` (a study's budget or dataset) of each run's JSON, repeats dropped, "?" where it fails."""
  parts = []
  for d in datas:
    try:
      parts.append(fn(d))
    except Exception as e:
      parts.append(f"? ({type(e).__name__})")
  return "; ".join(dict.fromkeys(parts))


def judge_all(names: list[str], status: dict, out: str, scale: str) -> list[dict]:
  """One row per claim of the studies `names` judged at `scale`, from the JSONs of the runs it reads."""
  rows = []
  for c in C.CLAIMS:
    if c.study not in names or scale not in c.scales:
      continue
    s, jobs = C.STUDIES[c.study], claim_jobs(c, scale)
    row = {"claim": c.claim, "name": c.name, "study": c.study, "runs": jobs, "paper": c.paper_number, "ours": "",
           "budget": "", "dataset": "", "verdict": V.NOT_RUN, "links": []}
    rows.append(row)
    failed = [j for j in jobs if status.get(j, {}).get("status") != "ok"]
    if failed:
      row["ours"] = "; ".join(f"{j} {status.get(j, {}).get('status', 'not started')}: "
                              f"{status.get(j, {}).get('error') or ''}".strip() for j in failed)
      continue
    datas = []
    for j in jobs:
      with open(status[j]["json"]) as f:
        datas.append(json.load(f))
      row["links"] += [os.path.relpath(p, out) for p in [status[j]["table"], *status[j]["figures"]] if p]
    try:
      row["ours"], row["verdict"] = c.judge(V.merge_runs(datas))
    except V.Missing as e:
      row["ours"] = str(e)
    except Exception as e:  # a JSON the rule does not understand: say so, count as a failure
      row["ours"], row["error"] = f"rule failed: {type(e).__name__}: {e}", True
    row["budget"], row["dataset"] = _describe(s.budget, datas), _describe(s.dataset, datas)
  return rows


def _cell(x) -> str:
  return str(x).replace("|", "\\|").replace("\n", " ")


def write_summary(out: str, scale: str, rows: list[dict], status: dict, seconds: float) -> str:
  """Writes DIR/summary.md and DIR/summary.json; returns the markdown."""
  counts = {v: sum(r["verdict"] == v for r in rows) for v in V.VERDICTS}
  lines = [f"# Reproduction summary — scale {scale}", "",
           f"`{' '.join(['python scripts/reproduce_all.py', *sys.argv[1:]])}` · {seconds / 60:.1f} min · "
           + ", ".join(f"{n} {v}" for v, n in counts.items()), "", RULES_NOTE, "",
           "| claim | paper | ours | budget | dataset | verdict | table |", "|---|---|---|---|---|---|---|"]
  for r in rows:
    links = " ".join(f"[{os.path.basename(p)}]({p})" for p in r["links"])
    lines.append("| " + " | ".join(_cell(x) for x in (r["claim"], r["paper"], r["ours"], r["budget"], r["dataset"],
                                                      f"**{r['verdict']}**", links)) + " |")
  lines += ["", "| study | status | s | command |", "|---|---|---|---|"]
  for name, st in status.items():
    lines.append(f"| {name} | {st['status']}{': ' + _cell(st['error']) if st.get('error') else ''} | "
                 f"{st.get('seconds', '')} | {'`' + st['command'] + '`' if 'command' in st else ''} |")
  md = "\n".join(lines) + "\n"
  with open(os.path.join(out, "summary.md"), "w") as f:
    f.write(md)
  rel = lambda p: os.path.relpath(p, out) if isinstance(p, str) and os.path.isabs(p) else p
  studies = {n: {k: ([rel(x) for x in v] if isinstance(v, list) else rel(v)) for k, v in st.items()}
             for n, st in status.items()}
  with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump({"scale": scale, "seconds": seconds, "counts": counts, "claims": rows, "studies": studies}, f,
              indent=1)
  return md


def main(argv):
  """--list, or run the studies of --only at --scale, judge their claims, write the summary; 1 if a run failed."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  if FLAGS.list:
    print(list_claims())
    return 0
  scale = FLAGS.scale
  names = selected(FLAGS.only, scale)
  out = FLAGS.out or (tempfile.mkdtemp(prefix=f"reproduce_all_{scale}_") if scale in ("tiny", "quick")
                      else os.path.join(ROOT, "results", f"all_{scale}"))
  out = os.path.abspath(out)
  os.makedirs(out, exist_ok=True)
  wroot = FLAGS.workdir_root or tempfile.mkdtemp(prefix="reproduce_all_runs_")
  n_runs = len(jobs_of(names, scale))
  print(f"[reproduce_all] scale {scale}: {len(names)} studies ({', '.join(names)})"
        + (f", {n_runs} runs" if n_runs != len(names) else "") + f" → {out}; workdirs in {wroot}"
        + ("" if FLAGS.workdir_root else " (removed at exit)"), flush=True)
  signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # so that the cleanup below runs
  t0 = time.time()
  try:
    status = run_studies(names, scale, out, wroot, max(1, FLAGS.jobs), FLAGS.time_budget_s, FLAGS.data_dir)
  finally:
    if not FLAGS.workdir_root:
      shutil.rmtree(wroot, ignore_errors=True)
  status = {job_name(*j): status[job_name(*j)] for j in jobs_of(names, scale)}
  rows = judge_all(names, status, out, scale)
  print(write_summary(out, scale, rows, status, time.time() - t0))
  print(f"[reproduce_all] wrote {os.path.join(out, 'summary.md')} and summary.json ({time.time() - t0:.0f} s)")
  failed = [n for n, st in status.items() if st["status"] != "ok"] + [r["name"] for r in rows if r.get("error")]
  if failed:
    print(f"[reproduce_all] failed: {', '.join(failed)}", flush=True)
  return 1 if failed else 0


if __name__ == "__main__":
  app.run(main)
