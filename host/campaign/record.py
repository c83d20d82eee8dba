"""The campaign record: one SQLite file per campaign, hash-chained like a run record.

It *is* a run record (``host.record.RunRecord``: the same schema, chain and ``verify``;
``skid verify`` checks it), holding no samples: its ``run`` entry describes the campaign
(``recipe_name`` is the campaign's name, ``recipe_hash`` the campaign file's sha256,
``metadata.kind = "campaign"``), then notes, in order:

* ``campaign`` — the campaign file's text and the base recipe's hash (first entry);
* ``session`` — each campaign session: the run id of its run record (one coordinator
  run per session: the line is started once per session), started or resumed;
* ``experiment`` — every experiment, any status: index, kind (design | replicate),
  condition, status (ok | infeasible | failed), reason, results, absorbance, start and
  end (s on the session's run clock), line time, reagent volume, run id;
* ``state`` — the strategy's state after each experiment it was told (resume restores
  the last one);

and a ``finish`` entry per session (outcome: done | stopped | no_feasible_condition).
Reference: docs/campaigns.md."""

from __future__ import annotations

from host.record import KIND_NOTE, RunRecord, new_run_id

CAMPAIGNS_DIR = "campaigns"


class CampaignRecord:
    def __init__(self, rec: RunRecord):
        self.rec = rec
        self.campaign_id = rec.run_id
        self.path = rec.path

    @classmethod
    def create(
        cls, campaigns_dir, campaign, line_id: str, line_hash: str, recipe_hash: str, now_ms: int
    ):
        rec = RunRecord.create(
            campaigns_dir,
            line_id,
            line_hash=line_hash,
            recipe_name=campaign.name,
            recipe_hash=campaign.hash,
            config_hashes={},
            metadata={"kind": "campaign", "campaign_file": str(campaign.file.resolve())},
            now_ms=now_ms,
            run_id=new_run_id(f"campaign-{line_id}"),
        )
        out = cls(rec)
        out.add(
            now_ms,
            "campaign",
            f"campaign {campaign.name}: {campaign.strategy}, seed {campaign.seed}",
            {"text": campaign.text, "base_recipe_hash": recipe_hash},
        )
        return out

    @classmethod
    def open(cls, campaign_id, campaigns_dir=CAMPAIGNS_DIR, readonly: bool = False):
        rec = RunRecord.open(campaign_id, campaigns_dir, readonly=readonly)
        if rec.meta().get("metadata", {}).get("kind") != "campaign":
            rec.close()
            raise ValueError(f"{campaign_id}: not a campaign record")
        return cls(rec)

    def add(self, now_ms: int, kind: str, text: str, data: dict) -> None:
        self.rec.add_note(now_ms, kind, text, data)
        self.rec.flush()

    def notes(self, kind: str) -> list[dict]:
        return [
            e["data"]["data"] for e in self.rec.entries(KIND_NOTE) if e["data"].get("kind") == kind
        ]

    def experiments(self) -> list[dict]:
        """Every experiment recorded, in order (the latest entry per index)."""
        by_index: dict[int, dict] = {}
        for e in self.notes("experiment"):
            by_index[e["index"]] = e
        return [by_index[i] for i in sorted(by_index)]

    def strategy_state(self) -> dict | None:
        states = self.notes("state")
        return states[-1]["strategy"] if states else None

    def campaign_text(self) -> str:
        return self.notes("campaign")[0]["text"]

    def sessions(self) -> list[dict]:
        return self.notes("session")

    def meta(self) -> dict:
        return self.rec.meta()

    def finish(self, now_ms: int, outcome: str, summary: dict) -> None:
        self.rec.finish(now_ms, outcome, summary)

    def close(self) -> None:
        self.rec.close()
