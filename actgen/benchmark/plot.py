"""Gelem/s against the array size, per activation and op (``actgen bench --plot``, matplotlib)."""

from __future__ import annotations

import os

from .names import OPS, SHORT, STREAMS


STYLE = {"actgen": ("C0", "actgen C"), "actgen_numpy": ("C1", "actgen NumPy"), "numpy": ("C2", "NumPy"),
         "torch_out": ("C3", "PyTorch out="), "torch": ("C4", "PyTorch"), "numexpr": ("C5", "numexpr"),
         "actgen_torch": ("C6", "actgen.torch"), "torch_eager": ("C7", "torch eager"),
         "torch_compile": ("C8", "torch.compile"), "jax": ("C9", "jax.jit")}


def plot(report: dict, path: str) -> None:
    """Gelem/s against the number of elements: a panel per activation (rows) and op (columns),
    a colour per implementation, solid float32 and dashed float64 lines, one line per thread count;
    the grey lines are the copy bandwidth's limit for the op (bytes a copy moves per second over the
    op's bytes per element). Written atomically (PNG, or whatever the suffix says)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [r for r in report["results"] if r["op"] != "copy"]
    names = list(dict.fromkeys(r["name"] for r in results))
    ops = [op for op in OPS if any(r["op"] == op for r in results)]
    copies = {(r["dtype"], r["threads"], r["size"]): r["gb_s"] for r in report["results"]
              if r["op"] == "copy" and r["name"] == "copy"}
    fig, axes = plt.subplots(len(names), len(ops), figsize=(4.2 * len(ops), 2.9 * len(names)),
                             squeeze=False, sharex=True)
    for i, name in enumerate(names):
        for j, op in enumerate(ops):
            ax = axes[i][j]
            lines = {}
            for r in results:
                if r["name"] == name and r["op"] == op:
                    lines.setdefault((r["impl"], r["dtype"], r["threads"]), []).append((r["size"], r["gelem_s"]))
            for (impl, dtype, threads), points in sorted(lines.items()):
                points.sort()
                colour, label = STYLE.get(impl, ("k", impl))
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", ms=3, color=colour,
                        ls="-" if dtype == "float32" else "--", lw=1.4 if impl == "actgen" else 1.0,
                        label=f"{label}, {dtype}, {threads} thr")
            for dtype in dict.fromkeys(d for _, d, _ in lines):
                itemsize = 4 if dtype == "float32" else 8
                for threads in dict.fromkeys(t for _, d, t in lines if d == dtype):
                    limit = sorted((size, gb / (STREAMS[op] * itemsize)) for (d, t, size), gb in copies.items()
                                   if d == dtype and t == threads)
                    if limit:
                        ax.plot([p[0] for p in limit], [p[1] for p in limit], color="0.6", lw=0.8,
                                ls="-" if dtype == "float32" else "--")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{name}: {SHORT[op]}", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
            if j == 0:
                ax.set_ylabel("Gelem/s")
            if i == len(names) - 1:
                ax.set_xlabel("elements")
    handles = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="upper center", ncol=4, fontsize=7,
               bbox_to_anchor=(0.5, 1.0))
    m = report["machine"]
    fig.suptitle(f"actgen bench: {m.get('cpu')}, {m.get('usable_cpus')} CPUs (grey: copy bandwidth)",
                 fontsize=10, y=1.0 + 0.12 / max(1, len(names)))
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.25 / max(1, len(names))))
    suffix = os.path.splitext(path)[1] or ".png"
    tmp = f"{path}.{os.getpid()}.tmp{suffix}"
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
