"""Pieces every configuration section shares: strict models, and credentials by reference."""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, model_validator


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
