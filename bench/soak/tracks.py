"""What one live client saw: over the whole run, per chat, which seqs it holds (`Track`);
and per connection, whether the stream kept the order docs/live.md promises (`Order`)."""

from __future__ import annotations

from dataclasses import dataclass, field

#: The ways a connection can break the promise, as `Order` names them.
OUT_OF_ORDER = "out of order"
UNCOVERED = "uncovered gap"


@dataclass
class Track:
    """What one client saw of one chat: the newest seq, and any seq skipped below it."""

    top: int = 0
    holes: set[int] = field(default_factory=set)
    duplicates: int = 0

    def see(self, seq: int) -> bool:
        """Count a seq; True the first time it is seen."""
        if seq > self.top:
            self.holes.update(range(self.top + 1, seq))
            self.top = seq
            return True
        if seq in self.holes:
            self.holes.discard(seq)
            return True
        self.duplicates += 1
        return False

    def missing(self, last: int) -> int:
        """Seqs 1..last not seen."""
        return max(0, last - self.top) + sum(1 for s in self.holes if s <= last)


@dataclass
class Order:
    """One connection, per chat: each frame goes on where the previous one ended (a
    message at the next seq, or a `gap` frame from it), so the client sees seqs in order
    with every hole named. The first frame of a chat may go back to seqs the client said
    it holds (`since`): the server resends from where its chat list puts the chat, which
    can lag `since`. It never skips one."""

    since: dict[str, int] = field(default_factory=dict)
    covered: dict[str, int] = field(default_factory=dict)  # cid -> newest seq sent or named

    def message(self, cid: str, seq: int) -> str | None:
        """A message frame; what it broke (OUT_OF_ORDER, UNCOVERED) or None."""
        return self._step(cid, seq, seq)

    def gap(self, cid: str, first: int, last: int) -> str | None:
        """A gap frame naming seqs first..last; what it broke or None."""
        return self._step(cid, first, last)

    def _step(self, cid: str, first: int, last: int) -> str | None:
        covered = self.covered.get(cid)
        fault = None
        if covered is None:
            if first > self.since.get(cid, 0) + 1:
                fault = UNCOVERED
        elif first <= covered:
            fault = OUT_OF_ORDER
        elif first > covered + 1:
            fault = UNCOVERED
        self.covered[cid] = max(last, covered or 0)
        return fault
