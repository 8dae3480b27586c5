"""What a task touched that the agent's baseline never did: tools, transitions, targets, argument values.

A plain count of unseen argument values punishes agents whose arguments are always fresh (a support
agent sees a new customer id in every task). So each unseen value is weighted by how surprising
novelty is for its argument in the baseline, a Good-Turing estimate: the chance that the next value
of ``send_money.recipient`` is new is about the share of its baseline values seen in only one task.
A new IBAN in a field that always held one of three is loud; a new e-mail body is silent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

LEAF_KINDS = ("tool", "transition", "target", "value")

NOVELTY = [
    ("unseen_tools", "tools never called in the baseline"),
    ("unseen_transitions", "tool-to-tool transitions never seen in the baseline"),
    ("unseen_targets", "targets of a tool (recipients, URLs, channels...) never seen with that tool in the baseline"),
    ("unseen_values", "argument values never seen in the baseline"),
    ("value_surprise", "unseen argument values, each weighted by how rarely its argument takes a new value"),
    ("rarest_tool", "surprisal (-log probability) of the task's rarest tool under the baseline"),
    ("rarest_transition", "surprisal of the task's rarest tool-to-tool transition, given the previous tool"),
    ("rarest_target", "surprisal of the task's rarest target, given the tool"),
    ("rarest_value", "surprisal of the task's rarest argument value, given the tool and argument"),
]
_COUNTS = {"tool": "unseen_tools", "transition": "unseen_transitions", "target": "unseen_targets",
           "value": "unseen_values"}
_RAREST = {"tool": "rarest_tool", "transition": "rarest_transition", "target": "rarest_target",
           "value": "rarest_value"}


@dataclass
class Vocabulary:
    """Items of a set of baseline tasks: in how many tasks each item occurred, per kind and key.

    Each key (the tool for targets, the previous tool for transitions, tool and argument for values)
    is a categorical variable with a Good-Turing smoothed distribution: a seen item has probability
    (1 - p_new) * tasks / occurrences, an unseen one p_new, where p_new is the share of the key's
    items seen in exactly one task. Surprisal is -log of that probability.
    """

    n_tasks: int
    items: pd.DataFrame  # columns kind, key, item (uint64), tasks (int), text

    @classmethod
    def from_leaves(cls, leaves: pd.DataFrame, n_tasks: int) -> Vocabulary:
        grouped = leaves.groupby("item", sort=True, observed=True).agg(
            kind=("kind", "first"), key=("key", "first"), tasks=("trace_id", "size"), text=("text", "first"))
        return cls(n_tasks, grouped.reset_index()[["kind", "key", "item", "tasks", "text"]])

    def __post_init__(self) -> None:
        items = self.items.sort_values("item", kind="stable")
        self._items = items["item"].to_numpy(dtype=np.uint64)
        tasks = items["tasks"].to_numpy(dtype=float)
        self._tasks = tasks
        keys = items["key"].to_numpy(dtype=np.uint64)
        occurrences = pd.Series(tasks).groupby(keys).sum()
        once = pd.Series(tasks == 1).groupby(keys).sum()
        self._p_new_by_key = (once + 1.0) / (occurrences + 2.0)
        # An argument (or previous tool) never seen at all is as surprising as a key seen only once.
        self._p_new_unseen_key = (float((occurrences <= 1).sum()) + 1.0) / (self.n_tasks + 2.0)
        p_new = self._p_new_by_key.reindex(keys).to_numpy()
        self._item_surprisal = -np.log((1.0 - p_new) * tasks / occurrences.reindex(keys).to_numpy())

    def seen(self, items: np.ndarray) -> np.ndarray:
        position = np.minimum(np.searchsorted(self._items, items), max(len(self._items) - 1, 0))
        return (self._items[position] == items) if len(self._items) else np.zeros(len(items), dtype=bool)

    def surprisal(self, keys: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(-log probability, seen) of each item under its key's distribution."""
        seen = self.seen(items)
        out = -np.log(self._p_new(keys))
        if len(self._items):
            position = np.minimum(np.searchsorted(self._items, items), len(self._items) - 1)
            out[seen] = self._item_surprisal[position[seen]]
        return out, seen

    def novelty(self, leaves: pd.DataFrame, trace_ids: pd.Index) -> pd.DataFrame:
        """The NOVELTY features of each task in ``trace_ids`` against this vocabulary."""
        n = len(trace_ids)
        columns = {name: np.zeros(n) for name, _ in NOVELTY}
        if not leaves.empty and n:
            task = trace_ids.get_indexer(leaves["trace_id"])
            inside = task >= 0
            kind = kind_codes(leaves["kind"])
            surprisal, seen = self.surprisal(leaves["key"].to_numpy(dtype=np.uint64),
                                             leaves["item"].to_numpy(dtype=np.uint64))
            for code, name in enumerate(LEAF_KINDS):
                mine = inside & (kind == code)
                columns[_COUNTS[name]] = np.bincount(task[mine & ~seen], minlength=n).astype(float)
                rarest = np.zeros(n)
                np.maximum.at(rarest, task[mine], surprisal[mine])
                columns[_RAREST[name]] = rarest
            values = inside & ~seen & (kind == LEAF_KINDS.index("value"))
            columns["value_surprise"] = np.bincount(task[values], weights=surprisal[values], minlength=n)
        return pd.DataFrame(columns, index=trace_ids)

    def unseen_examples(self, leaves: pd.DataFrame, limit: int = 5) -> dict[str, dict[str, list[str]]]:
        """Per task, what it touched that the baseline never saw (``value``, ``tool``...) or saw in
        one task only (``rare value``...), at most ``limit`` of each, to name them in alerts."""
        if leaves.empty:
            return {}
        items = leaves["item"].to_numpy(dtype=np.uint64)
        seen = self.seen(items)
        once = np.zeros(len(items), dtype=bool)
        if len(self._items):
            position = np.minimum(np.searchsorted(self._items, items), len(self._items) - 1)
            once = seen & (self._tasks[position] == 1)
        picked = leaves.assign(label=np.where(seen, "rare ", "") + leaves["kind"].astype(str))[~seen | once]
        out: dict[str, dict[str, list[str]]] = {}
        for (trace_id, label), group in picked.groupby(["trace_id", "label"], sort=False):
            out.setdefault(trace_id, {})[label] = group["text"].head(limit).tolist()
        return out

    def _p_new(self, keys: np.ndarray) -> np.ndarray:
        """Good-Turing chance that the next item of each key is one never seen before."""
        p = self._p_new_by_key.reindex(keys).to_numpy()
        return np.where(np.isnan(p), self._p_new_unseen_key, p)


def kind_codes(kinds: pd.Series) -> np.ndarray:
    """Leaf kinds as small integers (their index in LEAF_KINDS), whatever their dtype."""
    if isinstance(kinds.dtype, pd.CategoricalDtype) and tuple(kinds.cat.categories) == LEAF_KINDS:
        return kinds.cat.codes.to_numpy()
    return pd.Categorical(kinds.astype(str), categories=LEAF_KINDS).codes
