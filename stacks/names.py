"""Every AWS name of a game, derived from its id in one place (a new game needs no naming code)."""
from __future__ import annotations

from dataclasses import dataclass

from ltv.config import GameConfig


@dataclass(frozen=True)
class Names:
    """Names of a game's stacks and resources: `galaxy-raiders` -> `Ltv-GalaxyRaiders-DataLake`,
    bucket `ltv-galaxy-raiders-raw-111111111111`, database `ltv_galaxy_raiders`, ..."""

    game: str
    account: str

    @classmethod
    def of(cls, config: GameConfig) -> Names:
        return cls(config.game.id, config.require_aws().account)

    @property
    def prefix(self) -> str:
        return f"ltv-{self.game}"

    @property
    def pascal(self) -> str:
        return "".join(part.capitalize() for part in self.game.split("-"))

    def stack(self, concern: str) -> str:
        """CloudFormation stack name, e.g. Ltv-GalaxyRaiders-DataLake."""
        return f"Ltv-{self.pascal}-{concern}"

    def bucket(self, purpose: str) -> str:
        """Globally unique bucket name (the account id makes it unique; at most 56 characters)."""
        return f"{self.prefix}-{purpose}-{self.account}"

    @property
    def database(self) -> str:
        """Glue database (no '-' allowed in Athena identifiers)."""
        return "ltv_" + self.game.replace("-", "_")

    @property
    def workgroup(self) -> str:
        return self.prefix

    def resource(self, name: str) -> str:
        """Name of a job, workflow, trigger, topic, role...: ltv-<game>-<name>."""
        return f"{self.prefix}-{name}"

    @property
    def key_alias(self) -> str:
        return f"alias/{self.prefix}"

    @property
    def glue_log_group_prefix(self) -> str:
        """Glue 5.0's `--custom-logGroup-prefix`: the jobs log to <prefix>/output and <prefix>/error."""
        return f"/aws-glue/jobs/{self.prefix}"
