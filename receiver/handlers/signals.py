"""Handlers: who runs for an event, and running each of them on its own.

Two ways to subscribe, both recorded the same way:

* ``@on("license.created")``, ``@on("license.*")``, ``@on("*")``, optionally with
  ``source="keygen"`` and ``enabled=lambda settings: ...``; the registry keeps strong references
  and lists handlers in registration order.
* blinker: ``signal_for("license.created").connect(fn)`` or ``event_received.connect(fn)``.
  The event's ``source`` is the blinker sender, so ``connect(fn, sender="keygen")`` filters by
  source. blinker's own rules apply (``connect`` is weak unless ``weak=False``).

blinker's ``send()`` stops at the first receiver that raises and calls receivers in no fixed
order, so dispatch never calls ``send()``: ``handlers_for`` collects the receivers in a stable
order and ``run_handlers`` calls each as ``fn(event, settings=..., trigger=...)``, catching and
recording each failure. Nothing here touches the database; the caller stores the ``Run``s.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import re
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from blinker import NamedSignal, Namespace

from ..config import SOURCES
from ..events import Event, utc_now_iso
from .retries import RETRIES_ATTRIBUTE, GiveUp, RetryLater, check_retries


class Routable(Protocol):
    """What choosing handlers needs: a stored ``Event`` or a not yet stored record."""

    @property
    def source(self) -> str: ...

    @property
    def event_type(self) -> str: ...

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
Settings = Mapping[str, Any]
Predicate = Callable[[Settings], Any]

TRIGGERS = ("delivery", "replay", "retry")

_signals = Namespace()

event_received: NamedSignal = NamedSignal(
    "event-received",
    doc="Sent for every event, whatever its type. Receivers: fn(event, **extra).",
)

handler_gave_up: NamedSignal = NamedSignal(
    "handler-gave-up",
    doc="Sent when a handler will not run again on an event (attempts used up, GiveUp, "
        "retries=0). Sender: the handler's name; keywords event and run. Receivers are for "
        "notifications: their failures are logged, never retried.",
)

#: Internal: sent after dispatch, a replay or an attempt stored runs (sender: the store;
#: keywords ``event`` and ``runs``, the stored run records). The problems' notice board
#: listens, so the handler side needs nothing of it.
runs_recorded: NamedSignal = NamedSignal("runs-recorded")

_NOBODY = object()

_SEGMENT = r"[a-z0-9][a-z0-9_-]*"
_PATTERN = re.compile(rf"\*|{_SEGMENT}(?:\.{_SEGMENT})*(?:\.\*)?")


def signal_for(event_type: str) -> NamedSignal:
    """The blinker signal of one normalized event type; its name is the event type."""
    if not isinstance(event_type, str) or not event_type:
        raise ValueError("signal_for() needs an event type such as 'license.created'")
    if "*" in event_type:
        raise ValueError(
            f"signal_for({event_type!r}): signals are per exact event type; use "
            "@on('license.*') for a prefix or event_received for every event"
        )
    return _signals.signal(event_type)


def check_pattern(pattern: Any) -> str:
    """Return ``pattern`` if it is a valid handler pattern, else raise ``ValueError``."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise ValueError(
            f"handler pattern {pattern!r} is empty: use an event type such as "
            "'license.created', a prefix such as 'license.*', or '*' for every event"
        )
    if _PATTERN.fullmatch(pattern):
        return pattern
    if any(char.isspace() for char in pattern):
        problem = "contains whitespace"
    elif pattern != pattern.lower():
        problem = "has upper-case letters (event types are dotted lower case)"
    elif "*" in pattern:
        problem = "uses '*' inside a segment or before the end ('*' stands alone or ends 'x.*')"
    else:
        problem = "is not a dotted event type (segments of a-z, 0-9, '-' and '_')"
    raise ValueError(
        f"handler pattern {pattern!r} {problem}; expected 'license.created', 'license.*' or '*'"
    )


def pattern_matches(pattern: str, event_type: str) -> bool:
    """``*`` matches everything, ``license.*`` every type below ``license.``, else equality."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


def _name_of(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None) or type(fn).__module__
    qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}.{qualname}"


def _code_location(fn: Callable[..., Any]) -> tuple[str, int] | None:
    code = getattr(inspect.unwrap(fn), "__code__", None)
    return (code.co_filename, code.co_firstlineno) if code is not None else None


def _make_id(obj: Any) -> Hashable:
    """blinker's receiver id: stable for bound methods, which are new objects on each access."""
    if inspect.ismethod(obj):
        return id(obj.__func__), id(obj.__self__)
    if isinstance(obj, (str, int)):
        return obj
    return id(obj)


@dataclass(frozen=True)
class Handler:
    """One subscription: a callable, the pattern it listens to, and where it came from.

    ``via`` is ``"on"`` for the decorator, ``"blinker"`` for receivers connected to a signal.
    ``plugin`` is the entry-point name that brought it in, if any.
    """

    name: str
    fn: Callable[..., Any]
    pattern: str
    source: str | None = None
    enabled: Predicate | None = None
    plugin: str | None = None
    via: str = "on"
    #: Attempts after the first when it fails; None: ``HANDLER_RETRIES``.
    retries: int | None = None

    @property
    def module(self) -> str:
        return getattr(self.fn, "__module__", None) or type(self.fn).__module__

    def matches(self, event: Routable) -> bool:
        if self.source is not None and self.source != event.source:
            return False
        return pattern_matches(self.pattern, event.event_type)

    def is_enabled(self, settings: Settings) -> bool:
        """Whether the ``enabled`` predicate (if any) allows this handler under ``settings``."""
        if self.enabled is None:
            return True
        return bool(self.enabled(settings))

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pattern": self.pattern,
            "source": self.source,
            "module": self.module,
            "plugin": self.plugin,
            "conditional": self.enabled is not None,
            "via": self.via,
            "retries": self.retries,
        }


@dataclass
class Run:
    """One handler run (docs/reference.md) without ``id`` and ``event_id``: the store adds them."""

    handler: str
    status: str
    error: str | None
    traceback: str | None
    started_at: str
    duration_ms: float
    trigger: str = "delivery"
    attempt: int = 1
    #: Set when the handler raised ``RetryLater(seconds)``: the wait it asked for.
    retry_after: float | None = None
    #: Set when the handler raised ``GiveUp(reason)``.
    give_up: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict[str, Any]:
        return {
            "handler": self.handler,
            "status": self.status,
            "error": self.error,
            "traceback": self.traceback,
            "started_at": self.started_at,
            "duration_ms": self.duration_ms,
            "trigger": self.trigger,
            "attempt": self.attempt,
        }


_Key = tuple[str, str, str | None]

_lock = threading.RLock()
# Active subscriptions made with on(), in registration order.
_registry: dict[_Key, Handler] = {}
# Every subscription ever declared with on(), kept so register_module() can bring a module's
# handlers back after reset_registry() (the module stays imported, so importing it again would
# not run its decorators).
_declared: dict[_Key, Handler] = {}


def _key(handler: Handler) -> _Key:
    return handler.name, handler.pattern, handler.source


def _register(handler: Handler) -> None:
    location = _code_location(handler.fn)

    def same_code(existing: Handler) -> bool:
        return location is None or location == _code_location(existing.fn)

    with _lock:
        for key, existing in list(_registry.items()):
            if existing.name != handler.name or existing.fn is handler.fn:
                continue
            if not same_code(existing):
                raise ValueError(
                    f"a different handler is already registered as {handler.name!r}; "
                    "give one of them another name with @on(..., name='...')"
                )
            # The same code again (its module was reloaded): the new function takes over.
            _registry[key] = replace(existing, fn=handler.fn)
        for key, existing in list(_declared.items()):
            if existing.name == handler.name and existing.fn is not handler.fn:
                if same_code(existing):
                    _declared[key] = replace(existing, fn=handler.fn)
                else:  # declared before a reset_registry(); the newer declaration wins
                    del _declared[key]
        key = _key(handler)
        _declared[key] = handler
        if key in _registry:
            handler = replace(handler, plugin=_registry[key].plugin)
        _registry[key] = handler


def on(
    pattern: str,
    source: str | None = None,
    *,
    enabled: Predicate | None = None,
    name: str | None = None,
    retries: int | None = None,
) -> Callable[[F], F]:
    """Register the decorated ``fn(event, **extra)`` for events matching ``pattern``.

    ``pattern``: an event type (``user.password-reset``), a prefix (``license.*``: every type
    starting with ``license.``) or ``*``. ``source``: only events from that sender
    (``keygen``...). ``enabled``: ``settings -> bool``; when false the handler is neither run
    nor listed for the event. ``name``: the recorded name, default ``module.qualname``.
    ``retries``: attempts after a failed first run (default ``HANDLER_RETRIES``; 0: never).
    Decorators may be stacked to listen to several patterns. Returns ``fn`` unchanged.
    """
    check_pattern(pattern)
    if source is not None and source not in SOURCES:
        raise ValueError(f"handler source {source!r} is unknown; expected one of "
                         f"{', '.join(SOURCES)} or None for any source")
    if enabled is not None and not callable(enabled):
        raise ValueError("enabled must be a function of the settings, such as "
                         "lambda settings: settings['MAIL_RESET_ENABLED']")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ValueError("a handler name must be a non-empty string")
    if retries is not None:
        check_retries(retries)

    def decorator(fn: F) -> F:
        if not callable(fn):
            raise TypeError(f"@on({pattern!r}) must decorate a function, got {fn!r}")
        _register(Handler(name=name or _name_of(fn), fn=fn, pattern=pattern, source=source,
                          enabled=enabled, retries=retries))
        return fn

    return decorator


def _blinker_handlers(signal: NamedSignal, pattern: str, sender: Any) -> list[Handler]:
    """Live receivers of ``signal`` for ``sender`` (plus ``ANY``), in connection order."""
    found = {_make_id(receiver): receiver for receiver in signal.receivers_for(sender)}
    order = [key for key in list(signal.receivers) if key in found]
    return [Handler(name=_name_of(found[key]), fn=found[key], pattern=pattern, via="blinker",
                    retries=getattr(found[key], RETRIES_ATTRIBUTE, None))
            for key in order]


def _all_blinker_handlers() -> list[Handler]:
    handlers: list[Handler] = []
    for signal in [*list(_signals.values()), event_received]:
        pattern = "*" if signal is event_received else signal.name
        # Receivers for a sender nobody connects to are exactly those connected for ANY.
        handlers += _blinker_handlers(signal, pattern, _NOBODY)
        for source in SOURCES:
            handlers += [replace(handler, source=source)
                         for handler in _blinker_handlers(signal, pattern, source)
                         if not any(handler.fn is other.fn for other in handlers)]
    return handlers


def disabled_plugins(settings: Settings) -> set[str]:
    """Entry-point names in ``settings["DISABLED_PLUGINS"]`` (a list, or comma-separated)."""
    disabled = settings.get("DISABLED_PLUGINS") or []
    if isinstance(disabled, str):
        disabled = disabled.split(",")
    return {str(item).strip() for item in disabled if str(item).strip()}


def handlers_for(
    event: Routable, settings: Settings, *, names: Iterable[str] | None = None
) -> list[Handler]:
    """The handlers to run for ``event``: deduplicated, in a stable order.

    Order: ``@on`` handlers in registration order, then receivers of ``signal_for(type)``, then
    receivers of ``event_received``, each in connection order. A callable subscribed several
    ways runs once. Skipped: handlers whose ``enabled`` predicate is false (or raises, which is
    logged), and handlers of plugins listed in ``DISABLED_PLUGINS``. ``names`` keeps only
    those handler names (replay of chosen handlers).
    """
    disabled = disabled_plugins(settings)
    with _lock:
        candidates = [handler for handler in _registry.values() if handler.matches(event)]
    typed = _signals.get(event.event_type)  # never create a signal for an unknown type
    if typed is not None:
        candidates += _blinker_handlers(typed, event.event_type, event.source)
    candidates += _blinker_handlers(event_received, "*", event.source)

    wanted = set(names) if names is not None else None
    chosen: list[Handler] = []
    seen: set[Hashable] = set()
    taken: set[str] = set()
    for handler in candidates:
        ident = _make_id(handler.fn)
        if ident in seen or (handler.plugin is not None and handler.plugin in disabled):
            continue
        try:
            enabled = handler.is_enabled(settings)
        except Exception:
            logger.exception("enabled() of handler %s failed; not running it", handler.name)
            continue
        if not enabled:
            continue
        seen.add(ident)
        name, number = handler.name, 2
        while name in taken:  # two different callables share module.qualname (lambdas)
            name, number = f"{handler.name}#{number}", number + 1
        taken.add(name)
        if name != handler.name:
            handler = replace(handler, name=name)
        if wanted is None or handler.name in wanted:
            chosen.append(handler)
    return chosen


def run_handlers(
    event: Event,
    handlers: Iterable[Handler],
    *,
    settings: Settings,
    trigger: str = "delivery",
    attempt: int = 1,
) -> list[Run]:
    """Call each handler as ``fn(event, settings=settings, trigger=trigger)``, each on its own,
    with ``attempt=`` (1-based) too when the function takes it (or ``**extra``).

    An exception in one handler is caught, logged and recorded as a ``Run`` with status
    ``error`` (``"ValueError: msg"`` and the traceback); the next handler still runs.
    ``RetryLater`` and ``GiveUp`` are failures too, and the run says which was raised.
    """
    if trigger not in TRIGGERS:
        raise ValueError(f"trigger must be one of {', '.join(TRIGGERS)}, got {trigger!r}")
    runs: list[Run] = []
    for handler in handlers:
        started_at = utc_now_iso()
        start = time.perf_counter()
        error: str | None = None
        trace: str | None = None
        retry_after: float | None = None
        give_up: str | None = None
        extra: dict[str, Any] = {"attempt": attempt} if _takes_attempt(handler.fn) else {}
        try:
            handler.fn(event, settings=settings, trigger=trigger, **extra)
        except Exception as exc:
            if isinstance(exc, RetryLater):
                retry_after = exc.seconds
            elif isinstance(exc, GiveUp):
                give_up = exc.reason
            message = str(exc)
            error = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
            trace = traceback.format_exc()
            logger.warning("handler %s failed on event %s (%s): %s", handler.name,
                           getattr(event, "id", None), event.event_type, error, exc_info=True)
        duration_ms = round((time.perf_counter() - start) * 1000, 3)
        runs.append(Run(handler=handler.name, status="ok" if error is None else "error",
                        error=error, traceback=trace, started_at=started_at,
                        duration_ms=duration_ms, trigger=trigger, attempt=attempt,
                        retry_after=retry_after, give_up=give_up))
    return runs


def _takes_attempt(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` accepts an ``attempt`` keyword (by name or through ``**extra``);
    handlers written before retries existed keep being called as they were. Remembered per
    function: it is asked for every run."""
    try:
        return _TAKES_ATTEMPT[fn]
    except (KeyError, TypeError):  # not seen yet, or a callable that cannot be a key
        pass
    takes = _signature_takes_attempt(fn)
    with contextlib.suppress(TypeError):
        _TAKES_ATTEMPT[fn] = takes
    return takes


_TAKES_ATTEMPT: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def _signature_takes_attempt(fn: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin or a C callable: call it as before
        return False
    return any(parameter.kind is parameter.VAR_KEYWORD
               or (parameter.name == "attempt" and parameter.kind in (
                   parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY))
               for parameter in parameters)


def dispatch(
    event: Event, settings: Settings, *, trigger: str = "delivery",
    names: Iterable[str] | None = None,
) -> list[Run]:
    """``run_handlers(event, handlers_for(event, settings, names=names), ...)``."""
    return run_handlers(event, handlers_for(event, settings, names=names), settings=settings,
                        trigger=trigger)


def registered_handlers() -> list[Handler]:
    """Every subscription, for listing: ``@on`` ones in order, then blinker receivers.

    A function subscribed to several patterns appears once per pattern. For blinker receivers
    ``source`` is the sender they were connected for (None: any).
    """
    with _lock:
        handlers = list(_registry.values())
    return handlers + _all_blinker_handlers()


def register_module(module_name: str, plugin: str | None = None) -> list[Handler]:
    """(Re-)activate the ``@on`` handlers declared in a module or its submodules.

    Used by the plugin loader: it tags each with the plugin name and brings handlers back
    after ``reset_registry()`` without re-importing. Idempotent. Returns them in order.
    """
    prefix = module_name + "."
    with _lock:
        found: list[Handler] = []
        for key, handler in _declared.items():
            if handler.module != module_name and not handler.module.startswith(prefix):
                continue
            current = _registry.get(key, handler)
            if plugin is not None and current.plugin is None:
                current = replace(current, plugin=plugin)
            _registry[key] = current
            found.append(current)
        return found


def tag_plugin(names: Iterable[_Key], plugin: str) -> None:
    """Mark registered subscriptions (by key) as brought in by ``plugin``."""
    with _lock:
        for key in names:
            if key in _registry and _registry[key].plugin is None:
                _registry[key] = replace(_registry[key], plugin=plugin)


def unregister(keys: Iterable[_Key]) -> None:
    """Drop subscriptions by key (the plugin loader undoes a plugin that failed mid-import)."""
    with _lock:
        for key in keys:
            _registry.pop(key, None)
            _declared.pop(key, None)


def registry_keys() -> set[_Key]:
    with _lock:
        return set(_registry)


def reset_registry() -> None:
    """For tests: forget every ``@on`` handler and disconnect every blinker receiver.

    Modules stay imported; ``register_module`` (and so ``load_plugins``) brings plugin
    handlers back.
    """
    with _lock:
        _registry.clear()
    for signal in [*list(_signals.values()), event_received, handler_gave_up]:
        signal._clear_state()  # blinker's own reset, "useful for tests"
