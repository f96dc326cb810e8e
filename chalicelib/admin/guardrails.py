"""Checking a guardrail when an admin configures it, so a bad one fails then and not on a caller's request.

Two checks, where each is possible: the guardrail is one the stack may apply (its
``GuardrailIds``, which the functions' role has ``bedrock:ApplyGuardrail`` on), and it exists in
the region with that version (Bedrock's control plane ``GetGuardrail``). When the control plane
cannot be asked (no permission, no network), the first check alone decides, and the answer says
why the second was skipped in the log; a request with a guardrail Bedrock does not know then
fails clearly (``guardrail_unavailable``), never served without it.
"""

from __future__ import annotations

from typing import Any

from chalicelib import errors
from chalicelib.catalog.entry import check_guardrail
from chalicelib.observability import logger
from chalicelib.shared.guardrails import Guardrail


class GuardrailCheck:
    """Refuses a guardrail the stack may not apply or Bedrock does not have.

    ``bedrock`` is a boto3 ``bedrock`` (control plane) client, or None to skip the existence check.
    """

    def __init__(self, allowed: tuple[str, ...], bedrock: Any | None, region: str) -> None:
        self._allowed = allowed
        self._bedrock = bedrock
        self._region = region

    def __call__(self, guardrail: Guardrail) -> None:
        """Raise ``InvalidRequest`` naming the problem, or return.

        Raises
        ------
        InvalidRequest
            ``guardrail_not_allowed`` (outside the stack's list) or ``guardrail_not_found``.
        """
        check_guardrail(guardrail, self._allowed)
        if self._bedrock is None:
            return
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._bedrock.get_guardrail(guardrailIdentifier=guardrail.identifier, guardrailVersion=guardrail.version)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("ResourceNotFoundException", "ValidationException"):
                raise errors.InvalidRequest(
                    f"guardrail: Bedrock has no guardrail '{guardrail.identifier}' with version "
                    f"'{guardrail.version}' in {self._region}.",
                    param="guardrail",
                    code="guardrail_not_found",
                ) from None
            logger.warning("could not check a guardrail exists", extra={"guardrail": str(guardrail), "error": code})
        except BotoCoreError as exc:
            logger.warning("could not check a guardrail exists", extra={"guardrail": str(guardrail), "error": str(exc)})
