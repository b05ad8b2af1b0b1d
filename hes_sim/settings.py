"""Process settings from ``HES_*`` environment variables (command-line flags win)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HES_", extra="forbid", frozen=True)

    log_level: Literal["debug", "info", "warning", "error"] = "warning"
    log_format: Literal["console", "json"] = "console"
    broker_url: str | None = Field(
        default=None, description="use this broker instead of starting a private mosquitto"
    )
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=0, ge=0, le=65535, description="0 picks a free port")
    db_path: str | None = Field(
        default=None, description="SQLite file, or a postgresql:// URL of the store"
    )
    fleet_secret: SecretStr | None = Field(
        default=None,
        description="secret every meter's suite-0 keys derive from (default: random per run)",
    )
    api_token: SecretStr | None = Field(
        default=None,
        description="bearer token of the operator API; the operator CLI sends it too",
    )
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=0, ge=0, le=65535, description="0 picks a free port")
    api_url: str | None = Field(
        default=None, description="where the operator CLI finds the API, e.g. http://127.0.0.1:8080"
    )
