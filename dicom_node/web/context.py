"""What every route of one web app shares: the settings, the store, the node when it runs in this process."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from dicom_node.config import Settings
from dicom_node.store.database import Store
from dicom_node.web.retraining import RetrainRun


@dataclass
class WebContext:
    settings: Settings
    store: Store
    node: object | None = None  # dicom_node.node.Node, when `slmnode serve` runs the web server
    retraining: RetrainRun = field(init=False)

    def __post_init__(self):
        self.retraining = RetrainRun(self.store, self.settings)


def context(request: Request) -> WebContext:
    return request.app.state.web
