"""Pieces every configuration section shares: strict models, and credentials by reference."""

from __future__ import annotations

from typing import Annotated, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(Strict):
    """A credential by reference: an environment variable or a key of the secrets file. Never inline."""

    env: Optional[str] = None
    secret: Optional[str] = None  # key in the site's secrets_file

    @model_validator(mode="after")
    def _one(self) -> "SecretRef":
        if (self.env is None) == (self.secret is None):
            raise ValueError("give exactly one of env: VARIABLE or secret: KEY_IN_SECRETS_FILE")
        return self


def _base_url(v: str) -> str:
    if not v.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL")
    return v.rstrip("/")


def _route(v: str) -> str:
    if not v.startswith("/"):
        raise ValueError("must start with /")
    return v


Url = Annotated[str, AfterValidator(_base_url)]
Route = Annotated[str, AfterValidator(_route)]  # a path on the lane's public listener
