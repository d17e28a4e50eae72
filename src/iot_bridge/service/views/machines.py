"""The live state of the configured machines, for the views (board, MQTT state out)."""

from __future__ import annotations

from collections.abc import Sequence

from iot_bridge.service.ingest.ingestor import Ingestor
from iot_bridge.service.views.types import MachineStatus


class IngestorDirectory:
    """``MachineDirectory`` over the ingestor's detectors (read on the event loop)."""

    def __init__(self, ingestor: Ingestor) -> None:
        self._ingestor = ingestor

    def device_ids(self) -> Sequence[str]:
        """Configured devices, in config order."""
        return self._ingestor.device_ids

    def status(self, device_id: str) -> MachineStatus | None:
        """One device's live state; None when it is not configured."""
        ingestor = self._ingestor
        detector = ingestor.detector(device_id)
        spec = ingestor.spec(device_id)
        if detector is None or spec is None:
            return None
        started_at = detector.started_at if detector.session_id is not None else None
        return MachineStatus(
            device_id=device_id,
            machine_name=spec.machine_name,
            state=detector.state._value_,
            online=detector.online,
            last_seen=detector.last_seen,
            power_w=detector.power_w,
            session_id=detector.session_id,
            session_started_at=started_at,
            session_config=detector.config,
            parser_type=spec.parser_type,
            energy_wh_total=detector.energy_total_wh,
        )
