"""What a task touched that the agent's baseline never did: tools, transitions, targets, argument values.

A plain count of unseen argument values punishes agents whose arguments are always fresh (a support
agent sees a new customer id in every task). So each unseen value is weighted by how surprising
novelty is for its argument in the baseline, a Good-Turing estimate: the chance that the next value
of ``send_money.recipient`` is new is about the share of its baseline values seen in only one task.
A new IBAN in a field that always held one of three is loud; a new e-mail body is silent.

Counting what is new ignores what the task does with familiar pieces. ``uncovered`` asks instead how
much of the task no single baseline task explains: the weight of the task's items missing from the
baseline task that shares the most with it (a nearest neighbour under a weighted set containment).
A benign task resembles an earlier run of similar work; a hijacked one is that work plus the
attacker's actions, which no baseline task did alongside it, even when each piece is familiar.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sparse

LEAF_KINDS = ("tool", "transition", "target", "value")
COMMONPLACE = 0.1  # share of baseline tasks above which an item weighs nothing in ``uncovered``

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
    ("uncovered", "weight of what the task touched that its closest baseline task did not (rare items weigh more)"),
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
    # What each baseline task touched: columns task (0..n_tasks-1), item (uint64), trace_id; for
    # ``uncovered`` and for naming a task's closest baseline task.
    members: pd.DataFrame | None = None

    @classmethod
    def from_leaves(cls, leaves: pd.DataFrame, n_tasks: int) -> Vocabulary:
        grouped = leaves.groupby("item", sort=True, observed=True).agg(
            kind=("kind", "first"), key=("key", "first"), tasks=("trace_id", "size"), text=("text", "first"))
        task = pd.factorize(leaves["trace_id"])[0].astype(np.int32)
        members = pd.DataFrame({"task": task, "item": leaves["item"].to_numpy(dtype=np.uint64),
                                "trace_id": leaves["trace_id"].astype(str).to_numpy()})
        return cls(n_tasks, grouped.reset_index()[["kind", "key", "item", "tasks", "text"]], members)

    def __post_init__(self) -> None:
        items = self.items.sort_values("item", kind="stable")
        self._items = items["item"].to_numpy(dtype=np.uint64)
        self._lookup = pd.Index(self._items)  # a hash table: one pass over a task's leaves
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
        self._cover = self._cover_matrix()

    def _cover_matrix(self) -> sparse.csr_matrix | None:
        """Which baseline task (column) touched which item (row, in ``_items`` order), 0/1. Item
        weights are inverse document frequency, log((1 + n) / (1 + tasks)) + 1; an item in more
        than a tenth of the baseline tasks is commonplace (a stop word) and weighs 0: it says little
        about which task is closest, and leaving it out keeps the task-by-task product sparse."""
        n = self.n_tasks
        self._weight = np.log((1.0 + n) / (1.0 + self._tasks)) + 1.0
        self._weight[self._tasks > n * COMMONPLACE] = 0.0
        self._new_weight = float(np.log(1.0 + n) + 1.0)
        if self.members is None or self.members.empty or not len(self._items):
            return None
        column = np.searchsorted(self._items, self.members["item"].to_numpy(dtype=np.uint64))
        column = np.minimum(column, len(self._items) - 1)
        known = self._items[column] == self.members["item"].to_numpy(dtype=np.uint64)
        keep = known & (self._weight[column] > 0)
        rows = self.members["task"].to_numpy()[keep]
        matrix = sparse.csr_matrix((np.ones(int(keep.sum())), (column[keep], rows)),
                                   shape=(len(self._items), max(n, int(rows.max()) + 1 if rows.size else n)))
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        return matrix

    def position(self, items: np.ndarray) -> np.ndarray:
        """Where each item sits in the vocabulary, -1 for an item never seen."""
        if not len(self._items):
            return np.full(len(items), -1, dtype=np.intp)
        return self._lookup.get_indexer(np.asarray(items, dtype=np.uint64))

    def seen(self, items: np.ndarray) -> np.ndarray:
        return self.position(items) >= 0

    def surprisal(self, keys: np.ndarray, items: np.ndarray,
                  position: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(-log probability, seen) of each item under its key's distribution."""
        position = self.position(items) if position is None else position
        seen = position >= 0
        out = -np.log(self._p_new(keys))
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
            position = self.position(leaves["item"].to_numpy(dtype=np.uint64))
            surprisal, seen = self.surprisal(leaves["key"].to_numpy(dtype=np.uint64), None, position)
            for code, name in enumerate(LEAF_KINDS):
                mine = inside & (kind == code)
                columns[_COUNTS[name]] = np.bincount(task[mine & ~seen], minlength=n).astype(float)
                rarest = np.zeros(n)
                np.maximum.at(rarest, task[mine], surprisal[mine])
                columns[_RAREST[name]] = rarest
            values = inside & ~seen & (kind == LEAF_KINDS.index("value"))
            # Rounded: a sum in another leaf order must give the same feature (see ``uncovered``).
            columns["value_surprise"] = np.round(np.bincount(task[values], weights=surprisal[values], minlength=n), 9)
            columns["uncovered"] = self.uncovered(task[inside], position[inside], n)
        return pd.DataFrame(columns, index=trace_ids)

    def closest(self, leaves: pd.DataFrame, trace_ids: pd.Index, limit: int = 5) -> dict[str, dict[str, list[str]]]:
        """Per task, to name in an alert: the baseline task that shares the most weight with it
        (``closest baseline task``) and what the task touched that this one did not, rarest first
        (``not in the closest baseline task``), at most ``limit`` items. Meant for a few tasks."""
        if self._cover is None or leaves.empty or not len(trace_ids):
            return {}
        task = trace_ids.get_indexer(leaves["trace_id"])
        leaves, task = leaves[task >= 0], task[task >= 0]
        position = self.position(leaves["item"].to_numpy(dtype=np.uint64))
        seen = position >= 0
        weight = np.where(seen, self._weight[np.where(seen, position, 0)], self._new_weight)
        shared = seen & (weight > 0)
        rows = sparse.csr_matrix((weight[shared], (task[shared], position[shared])),
                                 shape=(len(trace_ids), len(self._items)))
        overlap = (rows @ self._cover).toarray()
        best = overlap.argmax(axis=1)
        by_task = self.members.drop_duplicates("task").set_index("task")["trace_id"]
        columns = self._cover.tocsc()
        texts = leaves["text"].to_numpy()
        out: dict[str, dict[str, list[str]]] = {}
        for i, trace_id in enumerate(trace_ids):
            mine = np.flatnonzero((task == i) & (weight > 0))
            if overlap[i, best[i]] > 0:
                there = columns.indices[columns.indptr[best[i]]:columns.indptr[best[i] + 1]]
                mine = mine[~np.isin(position[mine], there)]
                named = {"closest baseline task": [str(by_task.get(best[i], best[i]))]}
            else:
                named = {"closest baseline task": ["none shares anything"]}
            order = mine[np.argsort(-weight[mine], kind="stable")][:limit]
            named["not in the closest baseline task"] = [str(t) for t in texts[order]]
            out[str(trace_id)] = named
        return out

    def uncovered(self, task: np.ndarray, position: np.ndarray, n: int, chunk: int = 4096) -> np.ndarray:
        """For each of ``n`` tasks (leaves given as task number and vocabulary position, -1 for
        unseen), the weight of its items that its closest baseline task lacks: W(task) - max over
        baseline tasks b of W(task and b). An item never seen weighs as one seen in no task. Leaves
        are distinct per task."""
        out = np.zeros(n)
        if not len(task):
            return out
        seen = position >= 0
        column = np.where(seen, position, 0)
        weight = np.where(seen, self._weight[column] if len(self._items) else 0.0, self._new_weight)
        out += np.bincount(task, weights=weight, minlength=n)
        if self._cover is None:
            return out
        shared = seen & (weight > 0)
        rows = sparse.csr_matrix((weight[shared], (task[shared], column[shared])), shape=(n, len(self._items)))
        for start in range(0, n, chunk):
            block = rows[start:start + chunk] @ self._cover
            if block.nnz:
                out[start:start + chunk] -= _row_max(block)
        # Sums in another order (the store returns leaves in no fixed order) differ in the last bits;
        # rounded, equal tasks tie exactly when ranked against the baseline.
        return np.maximum(np.round(out, 9), 0.0)

    def unseen_examples(self, leaves: pd.DataFrame, limit: int = 5) -> dict[str, dict[str, list[str]]]:
        """Per task, what it touched that the baseline never saw (``value``, ``tool``...) or saw in
        one task only (``rare value``...), at most ``limit`` of each, to name them in alerts."""
        if leaves.empty:
            return {}
        position = self.position(leaves["item"].to_numpy(dtype=np.uint64))
        seen = position >= 0
        once = seen & (self._tasks[np.where(seen, position, 0)] == 1) if len(self._items) else seen
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


def _row_max(block: sparse.csr_matrix) -> np.ndarray:
    """Largest stored value of each row of a CSR matrix with non-negative entries (0 for empty rows)."""
    out = np.zeros(block.shape[0])
    filled = np.diff(block.indptr) > 0
    if filled.any():
        out[filled] = np.maximum.reduceat(block.data, block.indptr[:-1][filled])
    return out
