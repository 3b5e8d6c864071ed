"""The service's configuration: one TOML file, read and checked whole before anything starts.

Relative paths are read from the folder the file is in. Every problem is one precise line
naming the table and key (``answerable.toml: [server] port: ...``), raised as ConfigError.
Secrets are never in the file: it names key files, which stay readable by their owner only.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from answerable._files import read_capped
from answerable._urls import problem as url_problem
from answerable._urls import shown
from answerable.errors import AnswerableError, ConfigError

__all__ = [
    "ConsoleConfig",
    "McpConfig",
    "McpServerConfig",
    "OperationConfig",
    "Prerequisite",
    "ServiceConfig",
    "endpoint_problem",
    "load_config",
    "otlp_headers_problem",
    "resolve_target",
    "resolved_path",
]

LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True, slots=True)
class OperationConfig:
    """One ``[[operations]]`` entry: a function the service governs."""

    name: str
    target: str
    """``module:function``, imported from the config's folder first."""
    resource_class: str
    idempotent: bool = False
    lookup: str | None = None


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """``[agents.NAME]``: how ``answerable agent CONFIG NAME`` runs one agent in its own process."""

    name: str
    target: str
    """``class``: ``module:Class``, an Agent, imported from the config's folder first."""
    key: Path
    """``key``: the agent's key file (``answerable keys new``); its identity is the agent's name."""


@dataclass(frozen=True, slots=True)
class Prerequisite:
    """``[[prerequisites]]``: ``operation`` is judged knowing whether ``after`` already succeeded
    with the same values of the ``same`` arguments (a refund after a lookup of that order).

    The service reads it from the ledger, never from the call, and hands it to the rules as the
    Cedar context attribute ``prerequisites``: the set of ``after`` operations met. A signed
    policy decides what that means (``forbid ... unless { context.prerequisites.contains(...) }``).
    """

    operation: str
    after: str
    same: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class McpServerConfig:
    """``[mcp.servers.NAME]``: one upstream MCP server, on stdio (``command``) or HTTP (``url``)."""

    name: str
    command: tuple[str, ...] = ()
    url: str | None = None
    cwd: Path | None = None
    env: tuple[str, ...] = ()
    """``env``: names of environment variables passed from the service's environment to a stdio
    server (its credentials, say): the values are never in this file."""


@dataclass(frozen=True, slots=True)
class McpConfig:
    """``[mcp]``: the upstream MCP servers the service governs and how ``answerable mcp-proxy``
    answers its clients."""

    servers: tuple[McpServerConfig, ...]
    agent: str | None = None
    """``agent``: the charter agent the proxy acts as; its requests are signed with ``key``."""
    key: Path | None = None
    service: str | None = None
    """``service``: the URL of ``answerable serve`` (default: this config's own server)."""
    pending: str = "hold"
    """``pending``: ``hold`` keeps a call that waits for a review open (up to ``hold_seconds``);
    ``answer`` answers it at once as pending, with the intent id to ask about later."""
    hold_seconds: float = 300.0
    receipt: str = "wait"
    """``receipt``: ``wait`` returns a result once a checkpoint covers it, with its receipt;
    ``handle`` returns it at once, with the path to fetch the receipt from."""
    receipt_seconds: float = 30.0
    call_timeout: float = 30.0
    """``call_timeout_seconds``: a tool that has not answered by then is recorded ambiguous."""
    connect_timeout: float = 20.0


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    """``[console]``: the web console served under ``/console/`` beside the API."""

    users: Path
    """``users``: the accounts file (``answerable users set-password``), mode 0600."""
    viewers: tuple[str, ...] = ()
    """``viewers``: identities that are not in the charter and may only read."""
    session_minutes: int = 480
    """``session_minutes``: how long a log-in lasts."""
    compare: tuple[Path, ...] = ()
    """``compare``: other ledger files (runs of the same system) the comparison page sets beside
    this service's own ledger."""


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """What ``answerable serve`` runs."""

    source: Path
    folder: Path
    ledger: Path
    """``[ledger] path``: the SQLite file (unused when ``ledger_url`` is given)."""
    signing_key: Path | None
    origin: str
    charter: Path
    ruleset: Path
    policies: Path
    schema: Path
    operations: tuple[OperationConfig, ...]
    checkpoint_every: float = 60.0
    publish_dir: Path | None = None
    public_entries: bool = False
    host: str = "127.0.0.1"
    port: int = 8470
    tls_cert: Path | None = None
    tls_key: Path | None = None
    settle_every: float = 0.5
    public_url: str | None = None
    """``[server] public_url``: the base URL agents call (behind a TLS proxy); signatures cover it."""
    witnesses: tuple[tuple[str, str], ...] = ()
    """``[checkpoints] witnesses``: (url, verifier key) of each witness asked to cosign."""
    monitors: Path | None = None
    """``[monitors] file``: the system-level invariants evaluated on every new entry."""
    webhook: str | None = None
    """``[notify] webhook``: called on reviews opened, escalated or expired, halts, pauses and alerts."""
    nats_url: str | None = None
    """``[nats] url``: the NATS JetStream server the service publishes recorded events and
    messages on, for agents in other processes (``answerable agent``); none: nothing is published."""
    agents: tuple[AgentConfig, ...] = ()
    nats_key: Path | None = None
    """``[nats] key``: the service's own key: with it set, the service and every agent log in to
    NATS as NKEY users (agents with their own keys) and hold only the rights ``answerable
    nats-config`` gives them; without it, NATS is used without logins."""
    nats_ack_wait: float = 30.0
    """``[nats] ack_wait_seconds``: how long a record an agent took stays unacknowledged before
    JetStream gives it to another replica (or the same agent restarted): longer than a handler runs."""
    ledger_url: str | None = None
    """``[ledger] url``: a ``postgresql://`` URL naming a schema (never a password), instead of a file."""
    otel_endpoint: str | None = None
    """``[otel] endpoint``: an OTLP/HTTP traces URL; each entry appended while the service runs
    is exported as a span (``answerable otel-export`` exports a whole ledger after the fact)."""
    prerequisites: tuple[Prerequisite, ...] = ()
    mcp: McpConfig | None = None
    """``[mcp]``: upstream MCP servers whose tools are governed operations, and the proxy's settings."""
    console: ConsoleConfig | None = None
    """``[console]``: the web console; None: ``answerable serve`` serves no console."""


_KEYS = {
    "ledger": ("path", "signing_key", "origin", "url"),
    "charter": ("file",),
    "rules": ("signed", "policies", "schema"),
    "checkpoints": ("every_seconds", "publish_dir", "public_entries", "witnesses"),
    "server": ("host", "port", "tls_cert", "tls_key", "public_url"),
    "monitors": ("file",),
    "notify": ("webhook",),
    "nats": ("url", "key", "ack_wait_seconds"),
    "otel": ("endpoint",),
}
"""The keys of each plain table. A key or table this version does not read is refused, not
dropped: a misspelt ``every_secs`` would leave checkpoints at their default while the operator
believes they set them."""
_TABLES = (*_KEYS, "operations", "prerequisites", "agents", "mcp", "console")
"""Every top-level table; the last five check their own keys where they are read."""


def _known(name: str, keys: Iterable[object], known: tuple[str, ...], where: str) -> None:
    """Refuse the first of ``keys`` (of a table, or tables) not among ``known``, naming the
    closest known one."""
    for given in keys:
        if given not in known:
            close = difflib.get_close_matches(str(given), known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
            raise ConfigError(f"{name}: {where}: unknown key {str(given)!r} ({hint})")


def _check_keys(name: str, doc: dict[str, Any]) -> None:
    _known(name, doc, _TABLES, "top level")
    for table, value in doc.items():
        if table in _KEYS and isinstance(value, dict):
            _known(name, value, _KEYS[table], f"[{table}]")


def load_config(path: Path) -> ServiceConfig:
    """Read and check ``path``.

    Raises:
        ConfigError: the file is missing, not TOML, or a key is missing, of the wrong type or
            names a file that is not there; one line naming where.
    """
    try:
        doc = tomllib.loads(read_capped(path).decode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not TOML: {exc}") from exc
    folder = path.resolve().parent
    _check_keys(path.name, doc)
    read = _Reader(path.name, folder, doc)
    operations = doc.get("operations", [])
    if not isinstance(operations, list) or not (
        operations or (isinstance(doc.get("mcp"), dict) and doc["mcp"].get("servers"))
    ):
        raise ConfigError(
            f"{path.name}: [[operations]]: name at least one operation (name, target) or [mcp.servers.NAME]"
        )
    ops = tuple(read.operation(i, op) for i, op in enumerate(operations))
    names = [op.name for op in ops]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path.name}: [[operations]]: an operation name appears twice")
    host = read.text("server", "host", "127.0.0.1")
    tls_cert = read.maybe_path("server", "tls_cert", None, must_exist=True)
    tls_key = read.maybe_path("server", "tls_key", None, must_exist=True)
    if host not in LOOPBACK and (tls_cert is None or tls_key is None):
        raise ConfigError(
            f"{path.name}: [server] host: listening on {host} beyond loopback needs tls_cert and tls_key"
        )
    publish = read.maybe_path("checkpoints", "publish_dir", None, must_exist=False)
    if publish is not None and (publish == folder or publish in folder.parents):
        raise ConfigError(
            f"{path.name}: [checkpoints] publish_dir: {publish} holds the system's folder (its keys): "
            'give a folder of its own, like "log"'
        )
    mcp = read.mcp()
    for server in mcp.servers if mcp is not None else ():
        for op in ops:
            if op.name.startswith(f"{server.name}."):
                raise ConfigError(
                    f"{path.name}: [mcp.servers.{server.name}]: its tools are named {server.name}.TOOL, "
                    f"as is operation {op.name!r}; rename one"
                )
    ledger_url = read.ledger_url()
    nats_url = read._get("nats", "url", None)
    if nats_url is not None and (
        not isinstance(nats_url, str) or not nats_url.startswith(("nats://", "tls://"))
    ):
        scheme = nats_url.split("://")[0] if isinstance(nats_url, str) else type(nats_url).__name__
        raise ConfigError(f"{path.name}: [nats] url: want a nats:// URL, got one of {scheme!r}")
    made = ServiceConfig(
        nats_ack_wait=read.number("nats", "ack_wait_seconds", 30.0),
        nats_key=read.maybe_path("nats", "key", None, must_exist=False),
        agents=read.agents(),
        ledger_url=ledger_url,
        nats_url=nats_url,
        source=path,
        folder=folder,
        ledger=read.path("ledger", "path", "ledger.db", must_exist=False),
        signing_key=read.maybe_path("ledger", "signing_key", None, must_exist=False),
        origin=read.text("ledger", "origin", f"answerable.local/{folder.name}"),
        charter=read.path("charter", "file", "charter.json", must_exist=True),
        ruleset=read.path("rules", "signed", "ruleset.json", must_exist=True),
        policies=read.path("rules", "policies", "policies.cedar", must_exist=True),
        schema=read.path("rules", "schema", "schema.cedarschema", must_exist=True),
        operations=ops,
        checkpoint_every=read.number("checkpoints", "every_seconds", 60.0),
        publish_dir=publish,
        public_entries=read.flag("checkpoints", "public_entries", False),
        host=host,
        port=read.port(),
        tls_cert=tls_cert,
        tls_key=tls_key,
        public_url=read.url("server", "public_url"),
        witnesses=read.witnesses(),
        monitors=read.maybe_path("monitors", "file", None, must_exist=True),
        webhook=read.url("notify", "webhook", path_secret=True),
        otel_endpoint=read.otel_endpoint(),
        mcp=mcp,
        prerequisites=read.prerequisites(),
        console=read.console(),
    )
    _each_file_once(path.name, made)
    return made


def _each_file_once(name: str, config: ServiceConfig) -> None:
    """Refuse a config that names one file for two roles: ``rules sign`` writes the signed
    ruleset over what is there, so a ``[rules] signed`` that was the charter lost the charter
    (found by an audit), and a ledger that was a key file would be overwritten by a ledger."""
    roles = {
        "[charter] file": config.charter,
        "[rules] signed": config.ruleset,
        "[rules] policies": config.policies,
        "[rules] schema": config.schema,
        "[monitors] file": config.monitors,
        "[ledger] path": None if config.ledger_url else config.ledger,
        "[ledger] signing_key": config.signing_key,
        "[nats] key": config.nats_key,
        "[server] tls_cert": config.tls_cert,
        # One PEM file may hold both the certificate and its key, as ssl.load_cert_chain takes it.
        "[server] tls_key": None if config.tls_key == config.tls_cert else config.tls_key,
        "[console] users": config.console.users if config.console else None,
        **{f"[agents.{a.name}] key": a.key for a in config.agents},
    }
    seen: dict[Path, str] = {}
    for role, file in roles.items():
        if file is None:
            continue
        if file in seen:
            raise ConfigError(f"{name}: {role} and {seen[file]} name one file ({file}); give each its own")
        seen[file] = role


def resolved_path(path: Path, where: str) -> Path:
    """``path`` made absolute with its links followed, or a ConfigError naming ``where``: a name
    with a NUL byte, or a loop of links, is no path any file system gives (Python raised
    ValueError and RuntimeError for them, which are not what a config file's reader expects)."""
    if "\x00" in str(path):
        raise ConfigError(f"{where}: a path holds a NUL character")
    try:
        return path.resolve()
    except (RuntimeError, OSError) as exc:  # a loop of links; a name too long
        raise ConfigError(f"{where}: {path} cannot be followed to a file ({exc})") from exc


def endpoint_problem(url: str) -> str | None:
    """Why ``url`` cannot be an OTLP/HTTP endpoint here, or None. A URL carrying a user, a
    password or a query (where API keys hide) is refused: it would be printed and logged; the
    exporter reads credentials from ``OTEL_EXPORTER_OTLP_HEADERS`` instead."""
    wrong = url_problem(url)
    if wrong is not None:
        return wrong
    parts = urlsplit(url)
    if parts.username or parts.password or parts.query or parts.fragment:
        return (
            "holds a user, password or query; put credentials in OTEL_EXPORTER_OTLP_HEADERS, not in the URL"
        )
    return None


_OTLP_HEADER = re.compile(
    r"[ \t]*[\x21\x23-\x27\x2a\x2b\x2d\x2e\x30-\x39\x41-\x5a\x5e-\x7a\x7c\x7e]+[ \t]*="
    r"[ \t]*[\x20\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*[ \t]*"
)
"""One ``name=value`` of the OTLP headers variables as the exporter takes them (the
specification's format, values with spaces allowed as its liberal reading does)."""
_OTLP_HEADER_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS")


def otlp_headers_problem(environ: Mapping[str, str] | None = None) -> str | None:
    """Why the OTLP exporter would drop a header of its environment variable, or None.

    The exporter reads the traces variable if set and not empty, else the general one, and
    skips an element it cannot parse with a log line quoting it: a credential the collector
    needs is then missing (every export refused as unauthorized, for a reason nobody is told),
    and the line would print it. The element is named by its place, never shown.
    """
    env = os.environ if environ is None else environ
    variable = next((v for v in _OTLP_HEADER_VARIABLES if env.get(v)), None)
    if variable is None:
        return None
    elements = re.split(r"[ \t]*,[ \t]*", env[variable])
    for place, element in enumerate(elements, start=1):
        if element and not _OTLP_HEADER.fullmatch(element.strip()):
            return (
                f"{variable}: element {place} of {len(elements)} is not name=value as the OTLP "
                "exporter reads it (URL-encode a comma, semicolon, quote or backslash in a value); "
                "not shown, it may hold a credential"
            )
    return None


class _Reader:
    def __init__(self, name: str, folder: Path, doc: dict[str, Any]) -> None:
        self.name, self.folder, self.doc = name, folder, doc

    def _table(self, table: str) -> dict[str, Any]:
        value = self.doc.get(table, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{self.name}: [{table}] must be a table")
        return value

    def agents(self) -> tuple[AgentConfig, ...]:
        """``[agents.NAME]`` tables: ``class`` and ``key`` of each agent run as its own process."""
        made = []
        for name, table in self._table("agents").items():
            if not isinstance(table, dict):
                raise ConfigError(f"{self.name}: [agents.{name}] must be a table")
            _known(self.name, table, ("class", "key"), f"[agents.{name}]")
            target = table.get("class")
            if not isinstance(target, str) or ":" not in target:
                raise ConfigError(f"{self.name}: [agents.{name}] class: want module:Class, got {target!r}")
            key = table.get("key", f"keys/{name}.key")
            if not isinstance(key, str) or not key:
                raise ConfigError(f"{self.name}: [agents.{name}] key: want a path, got {key!r}")
            where = f"{self.name}: [agents.{name}] key"
            made.append(AgentConfig(name=name, target=target, key=resolved_path(self.folder / key, where)))
        return tuple(made)

    def ledger_url(self) -> str | None:
        """``[ledger] url``, checked: a postgresql:// URL without a password, and not beside ``path``."""
        value = self._get("ledger", "url", None)
        if value is None:
            return None
        if self._get("ledger", "path", None) is not None:
            raise ConfigError(f"{self.name}: [ledger]: give path (SQLite) or url (PostgreSQL), not both")
        if not isinstance(value, str) or not value.startswith(("postgresql://", "postgres://")):
            scheme = (  # never the value itself: without "://" it may be user:password@host
                type(value).__name__
                if not isinstance(value, str)
                else value.split("://")[0]
                if "://" in value
                else "none"
            )
            raise ConfigError(f"{self.name}: [ledger] url: want a postgresql:// URL, got one of {scheme!r}")
        from answerable.ledger.postgres import parse_url

        try:
            parse_url(value)
        except ConfigError as exc:
            raise ConfigError(f"{self.name}: [ledger] url: {exc}") from exc
        return value

    def _get(self, table: str, key: str, default: Any) -> Any:
        return self._table(table).get(key, default)

    def text(self, table: str, key: str, default: str) -> str:
        value = self._get(table, key, default)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{self.name}: [{table}] {key}: want a non-empty string, got {value!r}")
        return value

    def flag(self, table: str, key: str, default: bool) -> bool:
        value = self._get(table, key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.name}: [{table}] {key}: want true or false, got {value!r}")
        return value

    def number(self, table: str, key: str, default: float) -> float:
        value = self._get(table, key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 86_400:
            raise ConfigError(
                f"{self.name}: [{table}] {key}: want seconds between 0 and 86400, got {value!r}"
            )
        return float(value)

    def url(self, table: str, key: str, *, path_secret: bool = False) -> str | None:
        value = self._get(table, key, None)
        if value is None:
            return None
        if not isinstance(value, str) or not value.startswith(("http://", "https://")):
            got = shown(value, path_secret=path_secret) if isinstance(value, str) else type(value).__name__
            raise ConfigError(f"{self.name}: [{table}] {key}: want an http(s) URL, got {got}")
        wrong = url_problem(value)
        if wrong is not None:  # a port out of range ended the webhook's sender at its first event
            raise ConfigError(f"{self.name}: [{table}] {key}: {wrong}")
        return value

    def otel_endpoint(self) -> str | None:
        url = self.url("otel", "endpoint")
        if url is not None:
            problem = endpoint_problem(url)
            if problem is not None:
                raise ConfigError(f"{self.name}: [otel] endpoint: {problem}")
        return url

    def witnesses(self) -> tuple[tuple[str, str], ...]:
        value = self._get("checkpoints", "witnesses", [])
        found = []
        for i, entry in enumerate(value if isinstance(value, list) else [None]):
            if (
                not isinstance(entry, dict)
                or not isinstance(entry.get("url"), str)
                or not isinstance(entry.get("key"), str)
            ):
                raise ConfigError(
                    f"{self.name}: [checkpoints] witnesses #{i + 1}: want {{ url = ..., key = ... }}"
                )
            from answerable.ledger.witness import CosignatureVerifier

            try:
                CosignatureVerifier.from_key(entry["key"])
            except AnswerableError as exc:
                raise ConfigError(f"{self.name}: [checkpoints] witnesses #{i + 1}: key: {exc}") from exc
            problem = url_problem(entry["url"])
            if problem is not None:
                raise ConfigError(f"{self.name}: [checkpoints] witnesses #{i + 1}: url: {problem}")
            found.append((entry["url"], entry["key"]))
        return tuple(found)

    def port(self) -> int:
        value = self._get("server", "port", 8470)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65_535:
            raise ConfigError(f"{self.name}: [server] port: want 0 to 65535, got {value!r}")
        return value

    def path(self, table: str, key: str, default: str, *, must_exist: bool) -> Path:
        found = self.maybe_path(table, key, default, must_exist=must_exist)
        if found is None:
            raise ConfigError(f"{self.name}: [{table}] {key}: want a path")
        return found

    def maybe_path(self, table: str, key: str, default: str | None, *, must_exist: bool) -> Path | None:
        value = self._get(table, key, default)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{self.name}: [{table}] {key}: want a path, got {value!r}")
        resolved = resolved_path(self.folder / value, f"{self.name}: [{table}] {key}")
        if must_exist and not resolved.exists():
            raise ConfigError(f"{self.name}: [{table}] {key}: {value} does not exist")
        return resolved

    def console(self) -> ConsoleConfig | None:
        if "console" not in self.doc:
            return None
        table = self._table("console")
        where = f"{self.name}: [console]"
        unknown = set(table) - {"users", "viewers", "session_minutes", "compare"}
        if unknown:
            raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        users = self.path("console", "users", "console-users.json", must_exist=False)
        viewers = table.get("viewers", [])
        if not isinstance(viewers, list) or not all(
            isinstance(v, str) and v and not any(c.isspace() for c in v) for v in viewers
        ):
            raise ConfigError(f"{where} viewers: want a list of identities without spaces")
        if len(set(viewers)) != len(viewers):
            raise ConfigError(f"{where} viewers: an identity appears twice")
        minutes = table.get("session_minutes", 480)
        if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= 10_080:
            raise ConfigError(f"{where} session_minutes: want whole minutes from 1 to 10080, got {minutes!r}")
        compare = table.get("compare", [])
        if not isinstance(compare, list) or not all(isinstance(c, str) and c for c in compare):
            raise ConfigError(f"{where} compare: want a list of ledger files")
        others = []
        for given in compare:
            other = resolved_path(self.folder / given, f"{where} compare")
            if not other.is_file():
                raise ConfigError(f"{where} compare: {given} is not a file")
            others.append(other)
        return ConsoleConfig(
            users=users, viewers=tuple(viewers), session_minutes=minutes, compare=tuple(others)
        )

    def prerequisites(self) -> tuple[Prerequisite, ...]:
        entries = self.doc.get("prerequisites", [])
        if not isinstance(entries, list):
            raise ConfigError(f"{self.name}: [[prerequisites]]: want an array of tables")
        found = []
        for i, entry in enumerate(entries):
            where = f"{self.name}: [[prerequisites]] #{i + 1}"
            if not isinstance(entry, dict):
                raise ConfigError(f"{where}: want a table with operation, after and same")
            unknown = set(entry) - {"operation", "after", "same"}
            if unknown:
                raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
            operation, after, same = entry.get("operation"), entry.get("after"), entry.get("same", [])
            for key, value in (("operation", operation), ("after", after)):
                if not isinstance(value, str) or not value or any(c.isspace() for c in value):
                    raise ConfigError(f"{where}: {key}: want an operation name, got {value!r}")
            if operation == after:
                raise ConfigError(f"{where}: after: an operation cannot be its own prerequisite")
            if not isinstance(same, list) or not all(isinstance(s, str) and s for s in same):
                raise ConfigError(f"{where}: same: want a list of argument names")
            found.append(Prerequisite(str(operation), str(after), tuple(same)))
        return tuple(found)

    def mcp(self) -> McpConfig | None:
        table = self._table("mcp")
        if not table:
            return None
        where = f"{self.name}: [mcp]"
        known = {
            "servers", "agent", "key", "service", "pending", "hold_seconds", "receipt",
            "receipt_seconds", "call_timeout_seconds", "connect_timeout_seconds",
        }  # fmt: skip
        unknown = set(table) - known
        if unknown:
            raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        servers = table.get("servers", {})
        if not isinstance(servers, dict):
            raise ConfigError(f"{where} servers: want [mcp.servers.NAME] tables")
        for choice, allowed in (("pending", ("hold", "answer")), ("receipt", ("wait", "handle"))):
            if table.get(choice, allowed[0]) not in allowed:
                raise ConfigError(
                    f"{where} {choice}: want one of {', '.join(allowed)}, got {table[choice]!r}"
                )
        agent = table.get("agent")
        if agent is not None and (not isinstance(agent, str) or not agent):
            raise ConfigError(f"{where} agent: want the name of a charter agent")
        return McpConfig(
            servers=tuple(self.mcp_server(name, entry) for name, entry in servers.items()),
            agent=agent,
            key=self.maybe_path("mcp", "key", None, must_exist=False),
            service=self.url("mcp", "service"),
            pending=str(table.get("pending", "hold")),
            hold_seconds=self.number("mcp", "hold_seconds", 300.0),
            receipt=str(table.get("receipt", "wait")),
            receipt_seconds=self.number("mcp", "receipt_seconds", 30.0),
            call_timeout=self.number("mcp", "call_timeout_seconds", 30.0),
            connect_timeout=self.number("mcp", "connect_timeout_seconds", 20.0),
        )

    def mcp_server(self, name: str, entry: object) -> McpServerConfig:
        where = f"{self.name}: [mcp.servers.{name}]"
        if not name or "." in name or any(c.isspace() for c in name):
            raise ConfigError(f"{where}: want a name without dots or spaces")
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: want a table with command or url")
        unknown = set(entry) - {"command", "url", "cwd", "env"}
        if unknown:
            raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        command, url = entry.get("command"), entry.get("url")
        if (command is None) == (url is None):
            raise ConfigError(f"{where}: give exactly one of command (stdio) and url (streamable HTTP)")
        if command is not None and (
            not isinstance(command, list) or not command or not all(isinstance(c, str) and c for c in command)
        ):
            raise ConfigError(f"{where} command: want a list of strings, the program first")
        if url is not None and (not isinstance(url, str) or endpoint_problem(url) is not None):
            problem = endpoint_problem(url) if isinstance(url, str) else "not text"
            if problem and "credentials" in problem:
                problem = "holds a user, password or query: credentials never go in this file"
            raise ConfigError(f"{where} url: {problem}")
        cwd = entry.get("cwd", ".")
        if not isinstance(cwd, str):
            raise ConfigError(f"{where} cwd: want a path")
        env = entry.get("env", [])
        if not isinstance(env, list) or not all(isinstance(e, str) and e and "=" not in e for e in env):
            raise ConfigError(f"{where} env: want a list of environment variable names (no values)")
        return McpServerConfig(
            name, tuple(command or ()), url, resolved_path(self.folder / cwd, f"{where} cwd"), tuple(env)
        )

    def operation(self, i: int, entry: object) -> OperationConfig:
        where = f"{self.name}: [[operations]] #{i + 1}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: want a table with name and target")
        name, target = entry.get("name"), entry.get("target")
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise ConfigError(f"{where}: name: want a name without spaces, got {name!r}")
        if not isinstance(target, str) or target.count(":") != 1:
            raise ConfigError(f"{where} ({name}): target: want module:function, got {target!r}")
        lookup = entry.get("lookup")
        if lookup is not None and (not isinstance(lookup, str) or lookup.count(":") != 1):
            raise ConfigError(f"{where} ({name}): lookup: want module:function, got {lookup!r}")
        idempotent = entry.get("idempotent", False)
        if not isinstance(idempotent, bool):
            raise ConfigError(f"{where} ({name}): idempotent: want true or false")
        resource_class = entry.get("resource_class", name)
        if not isinstance(resource_class, str) or not resource_class:
            raise ConfigError(f"{where} ({name}): resource_class: want a name")
        unknown = set(entry) - {"name", "target", "lookup", "idempotent", "resource_class"}
        if unknown:
            raise ConfigError(f"{where} ({name}): unknown key {sorted(unknown)[0]!r}")
        resolve_target(target, self.folder, f"{where} ({name}): target")
        if lookup is not None:
            resolve_target(lookup, self.folder, f"{where} ({name}): lookup")
        return OperationConfig(name, target, resource_class, idempotent, lookup)


def resolve_target(target: str, folder: Path, where: str) -> Callable[..., Any]:
    """Import ``module:function``, looking in ``folder`` first.

    Raises:
        ConfigError: the module cannot be imported or has no such callable.
    """
    import sys

    module_name, _, function = target.partition(":")
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the operator's module: any failure to import is a config error
        raise ConfigError(f"{where}: cannot import {module_name}: {type(exc).__name__}: {exc}") from exc
    found = getattr(module, function, None)
    if not callable(found):
        raise ConfigError(f"{where}: {module_name} has no function {function!r}")
    return found  # type: ignore[no-any-return]
