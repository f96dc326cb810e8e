"""``pennyworth login`` / ``logout``, and the session every admin command uses.

Sign-in is Cognito's SRP flow through pycognito (the password never leaves
this machine), or USER_PASSWORD_AUTH where a profile says so (the local
stack: moto does not check SRP proofs). A new user's first sign-in asks for a
new password; a TOTP code is asked for when the user has MFA. Tokens are
cached per profile (0600) and refreshed with the refresh token when they are
about to expire.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any

import click

from cli import output
from cli.config import Profile, TokenCache, Tokens
from cli.errors import CliError, NetworkError, NotLoggedIn, SessionExpired


def cognito_client(profile: Profile) -> Any:
    """A boto3 cognito-idp client that needs no AWS credentials (these calls are unsigned)."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    return boto3.client(
        "cognito-idp",
        region_name=profile.region,
        endpoint_url=profile.cognito_endpoint_url,
        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 2}, connect_timeout=5, read_timeout=15),
    )


class Session:
    """The signed-in user of one profile: hands out a fresh ID token, refreshing it when needed."""

    def __init__(self, profile: Profile, cache: TokenCache | None = None) -> None:
        self.profile = profile
        self.cache = cache or TokenCache(profile.session_dir)

    def id_token(self) -> str:
        """A currently valid ID token.

        Raises
        ------
        NotLoggedIn
            Nobody logged in with this profile (or the local stack was restarted).
        SessionExpired
            The refresh token no longer works.
        NetworkError
            Cognito could not be reached to refresh.
        """
        tokens = self.cache.get(self.profile.name)
        if tokens is None or tokens.user_pool_id != self.profile.user_pool_id:
            hint = _login_hint(self.profile)
            raise NotLoggedIn(f"You are not logged in (profile '{self.profile.name}').", hint)
        if tokens.expiring():
            tokens = self.refresh(tokens)
        return tokens.id_token

    def refresh(self, tokens: Tokens) -> Tokens:
        """New ID and access tokens from the refresh token; cached before being returned."""
        from botocore.exceptions import BotoCoreError, ClientError

        if not tokens.refresh_token:
            raise SessionExpired("Your session has expired.", _login_hint(self.profile))
        try:
            result = cognito_client(self.profile).initiate_auth(
                ClientId=self.profile.client_id,
                AuthFlow="REFRESH_TOKEN_AUTH",
                AuthParameters={"REFRESH_TOKEN": tokens.refresh_token},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NotAuthorizedException", "UserNotFoundException"):
                raise SessionExpired("Your session has expired.", _login_hint(self.profile)) from None
            raise CliError(f"Cognito refused to refresh your session: {exc}", _login_hint(self.profile)) from None
        except BotoCoreError as exc:
            raise NetworkError(f"Could not reach Cognito to refresh your session: {exc}") from None
        fresh = _tokens(result["AuthenticationResult"], tokens.username, self.profile, tokens.refresh_token)
        self.cache.put(self.profile.name, fresh)
        return fresh

    def login(self, username: str, password: str, *, prompt: bool = True) -> Tokens:
        """Sign in (answering a new-password or MFA challenge by prompting) and cache the session.

        Raises
        ------
        CliError
            Wrong username or password, or a challenge that cannot be answered here.
        NetworkError
            Cognito could not be reached.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        client = cognito_client(self.profile)
        try:
            if self.profile.auth_flow == "password":
                response = client.initiate_auth(
                    ClientId=self.profile.client_id,
                    AuthFlow="USER_PASSWORD_AUTH",
                    AuthParameters={"USERNAME": username, "PASSWORD": password},
                )
            else:
                response = _srp(client, self.profile, username, password)
            result = _answer_challenges(client, self.profile, username, response, prompt=prompt)
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code in ("NotAuthorizedException", "UserNotFoundException"):
                raise CliError("Incorrect username or password.") from None
            if code == "PasswordResetRequiredException":
                raise CliError("Your password must be reset before you can log in; ask an admin.") from None
            raise CliError(f"Cognito refused the sign-in: {exc.response['Error'].get('Message', code)}") from None
        except BotoCoreError as exc:
            where = self.profile.cognito_endpoint_url or f"Cognito in {self.profile.region}"
            raise NetworkError(f"Could not reach {where}: {exc}", _network_hint(self.profile)) from None
        tokens = _tokens(result, username, self.profile, result.get("RefreshToken"))
        self.cache.put(self.profile.name, tokens)
        return tokens

    def logout(self) -> bool:
        """Forget the cached session; also signs out at Cognito when it can (best effort)."""
        tokens = self.cache.get(self.profile.name)
        if tokens is None:
            return False
        # Best effort: forgetting the local session below is what logout promises.
        with contextlib.suppress(Exception):
            cognito_client(self.profile).global_sign_out(AccessToken=tokens.access_token)
        return self.cache.delete(self.profile.name)


def _srp(client: Any, profile: Profile, username: str, password: str) -> dict[str, Any]:
    from pycognito.aws_srp import AWSSRP

    srp = AWSSRP(
        username=username, password=password, pool_id=profile.user_pool_id, client_id=profile.client_id, client=client
    )
    auth_params = srp.get_auth_params()
    response = client.initiate_auth(ClientId=profile.client_id, AuthFlow="USER_SRP_AUTH", AuthParameters=auth_params)
    if response.get("ChallengeName") != AWSSRP.PASSWORD_VERIFIER_CHALLENGE:
        return response
    return client.respond_to_auth_challenge(
        ClientId=profile.client_id,
        ChallengeName=AWSSRP.PASSWORD_VERIFIER_CHALLENGE,
        ChallengeResponses=srp.process_challenge(response["ChallengeParameters"], auth_params),
    )


def _answer_challenges(
    client: Any, profile: Profile, username: str, response: dict[str, Any], *, prompt: bool
) -> dict[str, Any]:
    for _ in range(3):  # new password, then possibly MFA
        challenge = response.get("ChallengeName")
        if challenge is None:
            return response["AuthenticationResult"]
        answers = {"USERNAME": response.get("ChallengeParameters", {}).get("USER_ID_FOR_SRP", username)}
        if challenge == "NEW_PASSWORD_REQUIRED" and prompt:
            output.notice("Your account needs a new password (12+ characters, upper, lower, digit, symbol).")
            answers["NEW_PASSWORD"] = click.prompt("New password", hide_input=True, confirmation_prompt=True)
        elif challenge == "SOFTWARE_TOKEN_MFA" and prompt:
            answers["SOFTWARE_TOKEN_MFA_CODE"] = click.prompt("MFA code from your authenticator app")
        else:
            raise CliError(
                f"Cognito asks for '{challenge}', which this command cannot answer"
                + ("" if prompt else " without a terminal")
                + "."
            )
        response = client.respond_to_auth_challenge(
            ClientId=profile.client_id, ChallengeName=challenge, Session=response["Session"], ChallengeResponses=answers
        )
    raise CliError("Cognito kept asking for more sign-in challenges; giving up.")


def _tokens(result: dict[str, Any], username: str, profile: Profile, refresh_token: str | None) -> Tokens:
    return Tokens(
        id_token=result["IdToken"],
        access_token=result["AccessToken"],
        refresh_token=refresh_token,
        expires_at=time.time() + int(result.get("ExpiresIn", 3600)),
        username=username,
        user_pool_id=profile.user_pool_id,
    )


def _login_hint(profile: Profile) -> str:
    flag = (
        "--local " if profile.name == "local" else ("" if profile.name == "default" else f"--profile {profile.name} ")
    )
    return f"Log in: pennyworth {flag}login"


def _network_hint(profile: Profile) -> str:
    if profile.name == "local":
        return "Is the local stack running? Start it with 'make dev'."
    return "Check your network connection and the profile's settings."


@click.command()
@click.option("--username", "-u", help="Your email address (default: the profile's username, if any).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin instead of prompting.")
@output.json_option
@click.pass_obj
def login(state: Any, username: str | None, password_stdin: bool, json_: bool) -> None:
    """Sign in with your Cognito user and cache the session (mode 0600)."""
    profile = state.profile()
    username = username or profile.username or click.prompt("Email")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif profile.password and username == profile.username:
        password = profile.password  # the local stack's admin: dev.json holds the password
        output.notice(f"Using the local stack's admin password from dev.json for {output.markup(username)}.")
    else:
        password = click.prompt("Password", hide_input=True)
    tokens = Session(profile).login(username, password, prompt=not password_stdin)
    data = {
        "profile": profile.name,
        "username": username,
        "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(tokens.expires_at)),
    }
    if json_:
        output.emit_json(data)
    else:
        output.notice(
            f"Logged in as {output.markup(username)} (profile '{output.markup(profile.name)}'); "
            "the session refreshes itself."
        )


@click.command()
@output.json_option
@click.pass_obj
def logout(state: Any, json_: bool) -> None:
    """Forget the cached session of this profile."""
    profile = state.profile()
    forgotten = Session(profile).logout()
    if json_:
        output.emit_json({"profile": profile.name, "logged_out": forgotten})
    else:
        output.notice(
            f"Logged out of profile '{output.markup(profile.name)}'." if forgotten else "You were not logged in."
        )
