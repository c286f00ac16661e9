"""Progress of a comparison: one tqdm bar per run (strategy, seed), on stderr."""

from __future__ import annotations

__all__ = ["ProgressBars"]


class ProgressBars:
    """One tqdm bar per run (strategy, seed), fed by run_seed's report tuples."""

    def __init__(self):
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self._bars = {}

    def __call__(self, msg):
        kind, name, seed = msg[:3]
        key = (name, seed)
        if kind == "start":
            self._bars[key] = self._tqdm(
                total=msg[3],
                desc=f"{name:>10} seed {seed:<3}",
                unit="epoch",
                position=len(self._bars),
                leave=True,
                dynamic_ncols=True,
            )
        elif kind == "epoch" and key in self._bars:
            _, _, _, _, loss, acc = msg
            bar = self._bars[key]
            bar.set_postfix_str(f"loss {loss:.3f}, test acc {100 * acc:.1f}%", refresh=False)
            bar.update(1)
        elif kind == "end" and key in self._bars:
            bar = self._bars[key]
            if msg[3] != "ok":
                bar.set_postfix_str(msg[3].upper())
            bar.refresh()

    def close(self):
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()
