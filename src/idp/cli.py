"""The `idp` command: serve, migrate, clients, users, keys, orgs, products."""

from __future__ import annotations

import asyncio
import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from idp.settings import get_settings

app = typer.Typer(help="idp: an OAuth 2.0 / OpenID Connect identity provider.", no_args_is_help=True)
clients_app = typer.Typer(help="Register and list OAuth clients.", no_args_is_help=True)
users_app = typer.Typer(help="Manage accounts.", no_args_is_help=True)
keys_app = typer.Typer(help="Signing keys: list and rotate.", no_args_is_help=True)
app.add_typer(clients_app, name="clients")
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)  # errors never mix into --json output on stdout


def _settings():
    """The settings, with the key-encryption key checked up front: a missing or malformed
    IDP_KEK (or another bad IDP_* value) is a one-line error, not a traceback halfway through."""
    from pydantic import ValidationError

    try:
        settings = get_settings()
        settings.key_encryption_key()
    except (RuntimeError, ValueError, ValidationError) as exc:
        _fail(str(exc))
    return settings


def _with_services(work):
    """Run `work(services, db)` in one transaction, then close everything."""
    from idp.services import Services

    settings = _settings()

    async def main():
        services = Services(settings)
        try:
            return await services.db.run(lambda db: work(services, db))
        finally:
            await services.close()

    return asyncio.run(main())


def _fail(message: str) -> None:
    errors.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code=1)


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Start the server (uvicorn). In development on SQLite it migrates first, so `idp serve`
    alone gives a working provider; production runs `idp migrate` as its own release step."""
    import uvicorn

    settings = _settings()
    if settings.env == "development" and settings.is_sqlite:
        _migrate(settings)
    uvicorn.run("idp.app:create_app", factory=True, host=host, port=port, workers=workers,
                proxy_headers=True, log_config=None)


@app.command()
def migrate() -> None:
    """Bring the database schema up to date, and create signing keys if there are none."""
    _migrate(_settings())
    console.print("database is up to date")


def _migrate(settings) -> None:
    from idp.db.migrate import upgrade

    if settings.is_sqlite:
        Path(settings.database_url.split("///", 1)[-1]).parent.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    _with_services(lambda s, db: s.keyring.ensure_keys(db))


@clients_app.command("add")
def clients_add(
    name: Annotated[str, typer.Option(help="Name shown on the consent page")],
    redirect_uri: Annotated[Optional[list[str]], typer.Option(help="Redirect URI (repeatable)")] = None,
    post_logout_redirect_uri: Annotated[Optional[list[str]], typer.Option(help="Post-logout redirect URI (repeatable)")] = None,
    public: Annotated[bool, typer.Option("--public/--confidential", help="Public (no secret) or confidential")] = False,
    grant_type: Annotated[Optional[list[str]], typer.Option(help="Grant type (repeatable)")] = None,
    scope: Annotated[Optional[list[str]], typer.Option(help="Allowed scope (repeatable)")] = None,
    auth_method: Annotated[Optional[str], typer.Option(help="Token endpoint auth method")] = None,
    first_party: Annotated[bool, typer.Option(help="Skip the consent page")] = False,
    native: Annotated[bool, typer.Option(help="Native app (loopback redirect with any port)")] = False,
    id_token_alg: Annotated[str, typer.Option(help="RS256, ES256, Ed25519 or EdDSA")] = "RS256",
    access_token_alg: Annotated[str, typer.Option(help=(
        "Algorithm of its JWT access tokens: ES256, RS256, Ed25519 or EdDSA"))] = "ES256",
    jwks_file: Annotated[Optional[Path], typer.Option(help="Client public keys for private_key_jwt")] = None,
    client_id: Annotated[Optional[str], typer.Option(help="Choose the client_id (default: random)")] = None,
    org: Annotated[Optional[str], typer.Option(help=(
        "Bind an integrator client to this organisation (handle or id): the REST API then shows "
        "it that organisation only"))] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the client, with its secret, as JSON")] = False,
) -> None:
    """Register a client. Its secret is printed once and only a keyed hash is stored. API scopes
    (idp:orgs:write, ...) are given with --scope, with --grant-type client_credentials."""
    from idp.oauth.clients import ClientError, ClientSpec

    spec = ClientSpec(
        name=name, redirect_uris=redirect_uri or [], post_logout_redirect_uris=post_logout_redirect_uri or [],
        public=public, token_endpoint_auth_method=auth_method, first_party=first_party,
        id_token_signed_response_alg=id_token_alg, access_token_signed_response_alg=access_token_alg,
        client_id=client_id,
        application_type="native" if native else None,
        jwks=json.loads(jwks_file.read_text()) if jwks_file else None, org=org,
    )
    if grant_type:
        spec.grant_types = grant_type
    if scope:
        spec.scopes = scope
    try:
        client, secret = _with_services(lambda s, db: s.clients.create(db, spec))
    except ClientError as exc:
        _fail(str(exc))
    shown = _client_dict(client) | {"client_secret": secret}
    if as_json:
        print(json.dumps(shown, indent=2))
    else:
        for key, value in shown.items():
            console.print(f"[bold]{key}[/bold]: {value}")


def _client_dict(client) -> dict:
    from idp.oauth.clients import registration

    return registration(client)  # never the secret or its hash


@clients_app.command("list")
def clients_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List registered clients (never their secrets)."""
    clients = _with_services(lambda s, db: s.clients.list(db))
    if as_json:
        print(json.dumps([_client_dict(c) for c in clients], indent=2))
        return
    table = Table("client_id", "name", "type", "auth method", "first party", "organisation", "redirect URIs")
    for c in clients:
        table.add_row(c.client_id, c.name, c.client_type, c.token_endpoint_auth_method,
                      "yes" if c.first_party else "no", c.org_id or "", "\n".join(c.redirect_uris))
    console.print(table)


def _client_change(client_id: str, change):
    """Run `change(services, db, client)` on an existing client; a refusal is one line."""
    from idp.oauth.clients import ClientError

    async def work(s, db):
        client = await s.clients.get(db, client_id, for_update=True)
        return None if client is None else await change(s, db, client)

    try:
        result = _with_services(work)
    except ClientError as exc:
        _fail(str(exc))
    if result is None:
        _fail(f"no client {client_id!r}")
    return result


@clients_app.command("delete")
def clients_delete(client_id: Annotated[str, typer.Argument(metavar="CLIENT_ID")]) -> None:
    """Delete a client: its grants, refresh tokens and consents go too, and its access tokens
    stop working."""
    from idp.audit.service import Actor

    async def delete(s, db, client):
        await s.clients.delete(db, client, actor=Actor.operator())
        return True

    _client_change(client_id, delete)
    console.print(f"deleted client {client_id}", markup=False, highlight=False)


@clients_app.command("rotate-secret")
def clients_rotate_secret(
    client_id: Annotated[str, typer.Argument(metavar="CLIENT_ID")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the client, with its new secret, as JSON")] = False,
) -> None:
    """Give a client a new secret, printed once; the old one stops working now."""
    from idp.audit.service import Actor

    async def rotate(s, db, client):
        return _client_dict(client) | {"client_secret": await s.clients.rotate_secret(
            db, client, actor=Actor.operator())}

    shown = _client_change(client_id, rotate)
    if as_json:
        print(json.dumps(shown, indent=2))
    else:
        for key, value in shown.items():
            console.print(f"[bold]{key}[/bold]: {value}")


@users_app.command("add")
def users_add(
    email: Annotated[str, typer.Option()],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True)],
    name: Annotated[Optional[str], typer.Option()] = None,
    phone: Annotated[Optional[str], typer.Option(
        help="a verified phone number to sign in with, national or international form")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create an account with a verified email (and optionally a verified phone) and a password."""
    from idp.accounts.service import AccountError
    from idp.audit.service import Actor

    async def create(s, db):
        if await s.accounts.find_by_email(db, email) is not None:
            raise AccountError("an account with this email exists")
        view = await s.account_admin.create(  # the same rules and audit event as the REST API
            db, Actor.operator(), email=email, email_verified=True, password=password, name=name,
            phone=phone, phone_verified=phone is not None)
        number = next((i.value for i in view.identifiers if i.kind == "phone"), None)
        return view.user, number

    try:
        user, number = _with_services(create)
    except AccountError as exc:
        _fail(f"{exc}: {phone}" if phone is not None and "phone" in str(exc) else str(exc))
    shown = {"sub": user.id, "email": user.email, "name": user.name}
    if number is not None:
        shown["phone_number"] = number
    print(json.dumps(shown, indent=2)) if as_json else console.print(shown)


class Via(str, Enum):
    email = "email"
    sms = "sms"


@users_app.command("temp-password")
def users_temp_password(
    login: Annotated[str, typer.Argument(metavar="LOGIN",
                                         help="the account's verified email or phone number")],
    via: Annotated[Via, typer.Option(help="send it to the account's verified email or phone")],
    password: Annotated[Optional[str], typer.Option(
        help="use this password instead of a generated one (it must pass the password policy; "
             "a command line is seen by the shell history and `ps`)")] = None,
    show: Annotated[bool, typer.Option("--show", help="also print the password here")] = False,
) -> None:
    """Set a temporary password and send it. It works for IDP_TEMPORARY_PASSWORD_TTL seconds
    (a week by default), must be changed at the next sign-in, and ends every session and token
    of the account now. The password is printed only with --show."""
    from idp.accounts.service import AccountError
    from idp.audit.service import Actor

    async def work(s, db):
        user = await s.accounts.find_by_login(db, login)
        if user is None:
            return None, None
        chosen = await s.temporary_passwords.set(db, user, via=via.value, password=password,
                                                 actor=Actor.operator())
        return chosen, await s.temporary_passwords.destination(db, user, via.value)

    from idp.accounts.temporary import masked

    try:
        chosen, destination = _with_services(work)
    except AccountError as exc:
        _fail(str(exc))
    if chosen is None:
        _fail(f"no account signs in with {login!r} (a verified email or phone number)")
    console.print(f"temporary password sent to {masked(destination)}")
    if show:
        console.print(f"temporary password: {chosen}", markup=False, highlight=False)


@keys_app.command("list")
def keys_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Signing keys and their state (next, active, retired)."""
    keys = _with_services(lambda s, db: s.keyring.list_keys(db))
    rows = [{"kid": k.kid, "alg": k.alg, "status": k.status, "created_at": k.created_at.isoformat(),
             "expires_at": k.expires_at.isoformat() if k.expires_at else None} for k in keys]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("kid", "alg", "status", "created", "leaves JWKS")
    for r in rows:
        table.add_row(r["kid"], r["alg"], r["status"], r["created_at"], r["expires_at"] or "")
    console.print(table)


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Start signing with the published next keys; keep the old ones until their tokens expire."""
    from idp.audit.service import Actor

    promoted = _with_services(lambda s, db: s.keyring.rotate(db, actor=Actor.operator()))
    for key in promoted:
        console.print(f"{key.alg}: now signing with {key.kid}")


@app.command()
def purge(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Delete the sign-in and token rows nothing can use any more, once (every server does it every
    IDP_HOUSEKEEPING_SECONDS; this is for a database whose servers are down, or cron)."""
    from idp.services import Services

    async def main() -> dict[str, int]:
        services = Services(_settings())
        try:
            return await services.housekeeping.purge(services.db)
        finally:
            await services.close()

    deleted = asyncio.run(main())
    if as_json:
        print(json.dumps(deleted))
    elif not deleted:
        console.print("nothing to delete")
    for table, count in ({} if as_json else deleted).items():
        console.print(f"{table}: {count:,} deleted")


@app.command()
def demo() -> None:
    """Create (once) and print the demo client and user that `make run` signs in with."""
    from idp.demo import ensure_demo

    settings = get_settings()
    info = _with_services(lambda s, db: ensure_demo(s, db))
    console.print("\n[bold]idp is starting[/bold] at " + settings.issuer)
    console.print(f"  demo user:    [bold]{info['email']}[/bold] / password [bold]{info['password']}[/bold]")
    console.print(f"  demo client:  client_id [bold]{info['client_id']}[/bold] (public, PKCE) "
                  f"redirect_uri {info['redirect_uri']}")
    console.print(f"  try it:       open [bold]{settings.issuer}/_demo[/bold] in a browser\n")


@app.command()
def seed(
    accounts: Annotated[int, typer.Option(help="accounts to create")] = 1000,
    organisations: Annotated[Optional[int], typer.Option(
        help="organisations to create [default: a tenth of --accounts]")] = None,
    memberships: Annotated[Optional[int], typer.Option(help=(
        "memberships, spread evenly over the organisations (one owner each) "
        "[default: twice --accounts]"))] = None,
    prefix: Annotated[str, typer.Option(help=(
        "marks this run's rows: emails end in @PREFIX.example.com, handles are PREFIX-<n>. A "
        "prefix already in the database is refused: seed more with another one"))] = "seed",
    password: Annotated[str, typer.Option(
        prompt=True, hide_input=True, envvar="IDP_SEED_PASSWORD", help=(
            "the password of EVERY seeded account: hashed once with the configured argon2 "
            "parameters (IDP_ARGON2_*), and that one hash stored for all of them"))] = ...,
) -> None:
    """Fill the database with realistic accounts (emails, phone numbers), organisations and
    memberships, for benchmarks: a million accounts in minutes (COPY on PostgreSQL; SQLite is for
    small seeds). One transaction: all of it or nothing. See src/idp/seed.py for the rows made."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from sqlalchemy.exc import IntegrityError

    from idp.accounts.password_policy import PasswordRejected
    from idp.seed import SeedPlan, SeedRefused, email_of
    from idp.seed import seed as seed_rows
    from idp.services import Services

    if organisations is None:
        organisations = accounts // 10
    if memberships is None:
        memberships = min(2 * accounts, organisations * accounts)
    plan = SeedPlan(accounts, organisations, memberships, prefix.strip().lower())
    settings = _settings()

    async def main(bars: Progress) -> dict[str, tuple[int, float]]:
        services = Services(settings)
        tasks: dict[str, int] = {}

        def progress(table: str, done: int, total: int) -> None:
            if table not in tasks:
                tasks[table] = bars.add_task(table, total=total)
            bars.update(tasks[table], completed=done)

        try:
            plan.check()
            normalised = services.password_policy.check(password, identifiers=(email_of(plan.prefix, 0),))
            password_hash = await services.hasher.hash(normalised)  # once, for every account
            async with services.db.engine.begin() as connection:
                return await seed_rows(connection, plan, password_hash, progress)
        finally:
            await services.close()

    columns = (TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console) as bars:
            written = asyncio.run(main(bars))
    except (SeedRefused, PasswordRejected) as exc:
        _fail(str(exc))
    except IntegrityError as exc:
        _fail(f"a seeded row collides with one in the database (nothing was written): {exc.orig}")
    table = Table("table", "rows", "seconds")
    for name, (rows, seconds) in written.items():
        table.add_row(name, str(rows), f"{seconds:.1f}")
    console.print(table)


courier_app = typer.Typer(help="The email and SMS outbox: run the worker, show its state.",
                          no_args_is_help=True)
app.add_typer(courier_app, name="courier")


@courier_app.command("run")
def courier_run() -> None:
    """Deliver queued messages in the foreground until Ctrl-C (a dedicated worker process; run
    the servers with IDP_COURIER_IN_PROCESS=false then). Any number may run at once."""
    _run_worker("courier", lambda s, stop: s.courier.run_forever(
        s.db, interval=s.settings.courier_poll_seconds, stop=stop))


webhooks_app = typer.Typer(help="Webhook delivery.", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")


@webhooks_app.command("run")
def webhooks_run() -> None:
    """Deliver webhook events in the foreground until Ctrl-C (a dedicated worker process; run the
    servers with IDP_WEBHOOKS_IN_PROCESS=false then). Any number may run at once."""
    _run_worker("webhooks", lambda s, stop: s.webhooks.run_forever(
        s.db, interval=s.settings.webhook_poll_seconds, stop=stop))


def _run_worker(name: str, run) -> None:
    """Run one outbox worker until SIGINT/SIGTERM; it stops after the round in progress, so
    nothing is left half sent."""
    import logging
    import signal

    from idp.observability import configure_logging
    from idp.services import Services

    settings = _settings()
    configure_logging(settings.log_level, settings.log_json)
    log = logging.getLogger(f"idp.{name}")

    async def main() -> None:
        services = Services(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        log.info("%s worker started", name)
        try:
            await run(services, stop)
        finally:
            await services.close()
        log.info("%s worker stopped", name)

    asyncio.run(main())


@courier_app.command("status")
def courier_status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """How many messages are queued, sent and failed (never their content or recipients)."""
    from idp.services import Services

    settings = _settings()

    async def main() -> dict[str, int]:
        services = Services(settings)
        try:
            return await services.courier.counts(services.db)
        finally:
            await services.close()

    from sqlalchemy.exc import OperationalError, ProgrammingError

    try:
        counts = asyncio.run(main())
    except (OperationalError, ProgrammingError, OSError):
        _fail("cannot read the outbox: is the database up and migrated? run `idp migrate`")
    if as_json:
        print(json.dumps(counts, indent=2))
        return
    table = Table("state", "messages")
    for state, count in counts.items():
        table.add_row(state, str(count))
    console.print(table)


# ---- organisations and products (issue 4): operators act as Actor.operator() ------------------

orgs_app = typer.Typer(help="Organisations: create and list them, add members and usernames, "
                            "lock billing-contact changes.", no_args_is_help=True)
orgs_members_app = typer.Typer(help="Members of an organisation.", no_args_is_help=True)
orgs_usernames_app = typer.Typer(help="Organisation usernames (name@handle) with a temporary password.",
                                 no_args_is_help=True)
products_app = typer.Typer(help="Products: the clients they group and the roles they declare.",
                           no_args_is_help=True)
app.add_typer(orgs_app, name="orgs")
orgs_app.add_typer(orgs_members_app, name="members")
orgs_app.add_typer(orgs_usernames_app, name="usernames")
app.add_typer(products_app, name="products")

_LOGIN_HELP = "an account's verified email, phone number or organisation username (name@handle)"


def _org_run(work):
    """`_with_services(work)`, every refusal one line on stderr and exit code 1."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from idp.accounts.errors import AccountError
    from idp.orgs.errors import OrgError, OrgNotFound

    try:
        return _with_services(work)
    except OrgNotFound as exc:
        _fail("not found: no such organisation (check its handle or id) or object"
              if exc.message == "not found" else exc.message)
    except OrgError as exc:
        _fail(exc.message)
    except AccountError as exc:
        _fail(str(exc))
    except (OperationalError, ProgrammingError, OSError):
        _fail("cannot use the database: is it up and migrated? run `idp migrate`")


async def _account(s, db, login: str):
    """The account that signs in with `login`, or a one-line refusal."""
    from idp.orgs.errors import OrgError

    user = await s.accounts.find_by_login(db, login, usernames=True)
    if user is None:
        raise OrgError(f"no account signs in with {login!r} ({_LOGIN_HELP})")
    return user


def _print(shown: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(shown, indent=2))
    else:
        for key, value in shown.items():
            console.print(f"{key}: {value}", markup=False, highlight=False)


@orgs_app.command("add")
def orgs_add(
    name: Annotated[str, typer.Option(help="the organisation's name, e.g. 'Acme Oy'")],
    handle: Annotated[str, typer.Option(help="2-40 lower-case letters, digits and single hyphens: "
                                             "the 'acme' of maija@acme")],
    owner: Annotated[str, typer.Option(help=f"the owner: {_LOGIN_HELP}")],
    business_id: Annotated[Optional[str], typer.Option(help="e.g. a Finnish Y-tunnus")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create an organisation with an existing account as its owner."""
    from idp.audit.service import Actor

    async def work(s, db):
        person = await _account(s, db, owner)
        org = await s.orgs.create(db, Actor.operator(), name=name, handle=handle,
                                  business_id=business_id, owner_id=person.id)
        return {"id": org.id, "handle": org.handle, "name": org.name,
                "business_id": org.business_id, "owner": person.id}

    _print(_org_run(work), as_json)


@orgs_app.command("list")
def orgs_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every organisation with its owner and number of members."""
    from idp.audit.service import Actor

    async def work(s, db):
        return [{"id": o.id, "handle": o.handle, "name": o.name, "business_id": o.business_id,
                 "owner": owner, "members": members, "billing_contact_locked": bool(o.billing_contact_locked),
                 "created_at": o.created_at.isoformat()}
                for o, owner, members in await s.orgs.list_all(db, Actor.operator())]

    rows = _org_run(work)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("handle", "name", "business ID", "members", "owner", "billing locked", "id")
    for r in rows:
        table.add_row(r["handle"], r["name"], r["business_id"] or "", str(r["members"]), r["owner"] or "",
                      "yes" if r["billing_contact_locked"] else "no", r["id"])
    console.print(table)


@orgs_members_app.command("add")
def orgs_members_add(
    org: Annotated[str, typer.Argument(metavar="ORG", help="the organisation's handle or id")],
    login: Annotated[str, typer.Argument(metavar="LOGIN", help=_LOGIN_HELP)],
    role: Annotated[str, typer.Option(help="admin, editor or member (ownership is only transferred)")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Make an existing account a member of an organisation."""
    from idp.audit.service import Actor

    async def work(s, db):
        person = await _account(s, db, login)
        membership = await s.orgs.members.add(db, Actor.operator(), org, person.id, role.strip().lower())
        return {"org": org, "sub": person.id, "role": membership.role}

    _print(_org_run(work), as_json)


@orgs_usernames_app.command("add")
def orgs_usernames_add(
    org: Annotated[str, typer.Argument(metavar="ORG", help="the organisation's handle or id")],
    local: Annotated[str, typer.Argument(metavar="LOCAL", help=(
        "the part before the @: 1-64 lower-case letters, digits, dots, hyphens and underscores, "
        "beginning and ending with a letter or digit"))],
    name: Annotated[str, typer.Option(help="the person's name")],
    deliver_to: Annotated[str, typer.Option(help=(
        "an email address or mobile number to send the temporary password to (stored unverified)"))],
    role: Annotated[str, typer.Option(help="admin, editor or member")] = "member",
    locale: Annotated[Optional[str], typer.Option(help="the language of the message: en, fi, sv, hu")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create a person who signs in as LOCAL@HANDLE, a member of ORG with --role, and send them a
    temporary password (never printed here) that must be changed at the first sign-in."""
    from idp.accounts.temporary import masked
    from idp.audit.service import Actor

    async def work(s, db):
        user, username = await s.org_usernames.create(
            db, Actor.operator(), org, local, name=name, deliver_to=deliver_to,
            role=role.strip().lower(), locale=locale)
        return {"username": username, "sub": user.id, "role": role.strip().lower(),
                "temporary_password_sent_to": masked(s.org_usernames.parse_destination(deliver_to)[1])}

    _print(_org_run(work), as_json)


@orgs_app.command("billing-lock")
def orgs_billing_lock(
    org: Annotated[str, typer.Argument(metavar="ORG", help="the organisation's handle or id")],
    locked: Annotated[Optional[bool], typer.Option(
        "--on/--off", help="refuse billing-contact changes (e.g. unpaid invoices), or allow them again")] = None,
) -> None:
    """Lock or unlock changes of the organisation's billing contact."""
    from idp.audit.service import Actor

    if locked is None:
        _fail("say --on (lock billing-contact changes) or --off (allow them)")

    async def work(s, db):
        await s.contacts.set_billing_lock(db, Actor.operator(), org, locked)

    _org_run(work)
    console.print(f"billing-contact changes of {org} are {'locked' if locked else 'allowed'}")


@products_app.command("add")
def products_add(
    handle: Annotated[str, typer.Option(help="2-40 lower-case letters, digits and single hyphens")],
    name: Annotated[str, typer.Option(help="the product's name")],
    roles: Annotated[str, typer.Option(help="the product's roles, highest first, comma-separated: "
                                            "owner,admin,user,viewer")],
    client: Annotated[Optional[list[str]], typer.Option(help="a client_id of the product (repeatable)")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create a product: its own role set, and the clients whose sign-in then needs a licence."""
    from idp.audit.service import Actor

    async def work(s, db):
        product = await s.products.create(db, Actor.operator(), handle, name,
                                          [r for r in roles.split(",") if r.strip()], client or [])
        return {"id": product.id, "handle": product.handle, "name": product.name,
                "roles": product.roles, "clients": list(client or [])}

    _print(_org_run(work), as_json)


@products_app.command("list")
def products_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every product with its roles and clients."""
    async def work(s, db):
        clients: dict[str, list[str]] = {}
        for c in sorted(await s.clients.list(db), key=lambda c: c.client_id):
            if c.product_id:
                clients.setdefault(c.product_id, []).append(c.client_id)
        return [{"id": p.id, "handle": p.handle, "name": p.name, "roles": list(p.roles),
                 "clients": clients.get(p.id, [])} for p in await s.products.list(db)]

    rows = _org_run(work)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("handle", "name", "roles", "clients", "id")
    for r in rows:
        table.add_row(r["handle"], r["name"], ", ".join(r["roles"]), "\n".join(r["clients"]), r["id"])
    console.print(table)
