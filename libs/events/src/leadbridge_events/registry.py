"""What a service consumes and emits, declared in one table: event type -> handler, and the types it emits.

Each service's ``handlers.py`` has one module-level constant that reads like a table::

    HANDLERS = EventHandlers(
        on(LeadCaptured, on_lead_captured, batch=on_lead_captured_batch),
        on(FollowUpLogged, on_follow_up),
        emits=(LeadScored,),
    )

Everything else is derived from it: the topics the consumer subscribes to (``topics``, via ``topic_for``),
the dispatch by ``event.type`` (``get``), the check behind ``ctx.emit`` (``may_emit``), and the AsyncAPI
document's ``send`` / ``receive`` operations per service (``schema_export``, which finds each service's
table through the ``leadbridge.handlers`` entry point group).

A handler is typed by its event: ``async def on_x(event: Envelope[X], ctx: HandlerContext[Deps]) -> None``;
what it needs besides the event (a scoring model, an SLA configuration) reaches it as ``ctx.deps``, built by
the service's composition root, so the table itself needs no factory.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import EventData
from leadbridge_contracts.topics import topic_for

if TYPE_CHECKING:
    from .transaction import BatchContext, HandlerContext

E = TypeVar("E", bound=EventData)

Handler = Callable[[Envelope[Any], "HandlerContext[Any]"], Awaitable[None]]
BatchHandler = Callable[[list[Envelope[Any]], "BatchContext[Any]"], Awaitable[None]]


@dataclass(frozen=True)
class Handles:
    """One row of the table: an event type, its one-event handler and, optionally, its batch handler."""

    event: type[EventData]
    handler: Handler
    batch: BatchHandler | None = None

    @property
    def event_type(self) -> str:
        return self.event.event_type


def on(event: type[E], handler: Callable[[Envelope[E], HandlerContext[Any]], Awaitable[None]], *,
       batch: Callable[[list[Envelope[E]], BatchContext[Any]], Awaitable[None]] | None = None) -> Handles:
    """``event`` is handled by ``handler`` (and, when the runner consumes in batches, by ``batch``).

    A batch handler gets the consecutive events of a fetched batch that share it (from one or more partitions,
    each partition's in order: a lead's events are all on one partition), in one transaction.
    """
    return Handles(event, handler, batch)


class EventHandlers:
    """A service's declaration: the event types it handles (one handler each) and the ones it emits."""

    def __init__(self, *handles: Handles, emits: Iterable[type[EventData]] = ()) -> None:
        self._by_type: dict[str, Handles] = {}
        for h in handles:
            if h.event_type in self._by_type:
                raise ValueError(f"two handlers for event type {h.event_type!r}")
            self._by_type[h.event_type] = h
        self.emits: tuple[type[EventData], ...] = tuple(dict.fromkeys(emits))
        self.emitted_types: frozenset[str] = frozenset(m.event_type for m in self.emits)
        for t in self.emitted_types:
            topic_for(t)  # an event type no topic carries could never be published: fail at import

    @property
    def consumes(self) -> tuple[type[EventData], ...]:
        return tuple(h.event for h in self._by_type.values())

    @property
    def topics(self) -> tuple[str, ...]:
        """The topics carrying the handled event types, in declaration order: what the consumer subscribes to."""
        return tuple(dict.fromkeys(topic_for(t).name for t in self._by_type))

    @property
    def sends_to(self) -> tuple[str, ...]:
        """The topics the declared emits are published to."""
        return tuple(dict.fromkeys(topic_for(t).name for t in (m.event_type for m in self.emits)))

    def get(self, event_type: str) -> Handles | None:
        return self._by_type.get(event_type)

    def __getitem__(self, event_type: str) -> Handles:
        return self._by_type[event_type]

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._by_type

    def __iter__(self) -> Iterator[Handles]:
        return iter(self._by_type.values())

    def __len__(self) -> int:
        return len(self._by_type)

    def may_emit(self, event_type: str) -> bool:
        return event_type in self.emitted_types

    def __repr__(self) -> str:
        return (f"EventHandlers(consumes={sorted(self._by_type)}, "
                f"emits={sorted(self.emitted_types)})")
