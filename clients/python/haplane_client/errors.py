"""Typed errors. Every error the client raises is a :class:`HaplaneError`; a server's refusal is
the subclass for its gRPC code (and, for FAILED_PRECONDITION, its ErrorInfo reason), carrying
the code, the server's message and the ``google.rpc.ErrorInfo`` reason of domain ``haplane.v1``.

ErrorInfo is read from the ``grpc-status-details-bin`` trailer with googleapis-common-protos'
``google.rpc.Status`` (the canonical definition; grpcio-status would add only a helper around
the same parsing).
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import grpc

from .models import MasterRef

#: The google.rpc.ErrorInfo domain of haplane's refusals.
ERROR_DOMAIN = "haplane.v1"
#: gRPC metadata naming the master on a not-master refusal.
MASTER_ID_METADATA = "haplane-master-id"
MASTER_URI_METADATA = "haplane-master-uri"
_DETAILS_TRAILER = "grpc-status-details-bin"


class Reason:
    """``ErrorInfo.reason`` values (src/wire.rs)."""

    NOT_MASTER = "NOT_MASTER"
    STATE_NOT_LOADED = "STATE_NOT_LOADED"
    STATE_DAMAGED = "STATE_DAMAGED"
    COMPACTED = "COMPACTED"
    VERSION_CONFLICT = "VERSION_CONFLICT"


class HaplaneError(Exception):
    """Base of every error of this package.

    ``code``: the gRPC status code (``None`` for errors of the client itself);
    ``message``: the server's (or client's) message;
    ``reason``: the ErrorInfo reason when the server sent one (see :class:`Reason`);
    ``error_metadata``: the ErrorInfo metadata (for NOT_MASTER: ``masterId``, ``masterUri``).
    """

    def __init__(
        self,
        message: str,
        code: Optional[grpc.StatusCode] = None,
        reason: Optional[str] = None,
        error_metadata: Optional[Mapping[str, str]] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason
        self.error_metadata: Dict[str, str] = dict(error_metadata or {})

    def __str__(self) -> str:
        parts = []
        if self.code is not None:
            parts.append(self.code.name)
        if self.reason:
            parts.append(f"[{self.reason}]")
        prefix = " ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message


# --- errors of the client itself -------------------------------------------------------------


class NoEndpoint(HaplaneError):
    """None of the endpoints answered WatchMaster within the failover timeout."""


class InvalidEndpoint(HaplaneError):
    """An endpoint is not a valid ``http://`` or ``https://`` URI."""


class NoMaster(HaplaneError):
    """No master was known within the wait."""


class FailoverTimeout(NoMaster):
    """A routed call could not be completed on a master within the failover timeout.
    ``last_error`` is the last failure seen (also the ``__cause__``), if any."""

    def __init__(self, message: str, last_error: Optional[HaplaneError] = None) -> None:
        super().__init__(
            message,
            code=last_error.code if last_error else None,
            reason=last_error.reason if last_error else None,
        )
        self.last_error = last_error


class ClientClosed(HaplaneError):
    """The client was closed."""


class ProtocolError(HaplaneError):
    """The server sent something the client cannot read."""


# --- the server's answers, by gRPC code ------------------------------------------------------


class InvalidArgument(HaplaneError):
    """INVALID_ARGUMENT: bad input (the message names the field)."""


class NotFound(HaplaneError):
    """NOT_FOUND."""


class AlreadyExists(HaplaneError):
    """ALREADY_EXISTS."""


class VersionMismatch(HaplaneError):
    """ABORTED with reason VERSION_CONFLICT: the entity is not at the expected version."""


Conflict = VersionMismatch


class FailedPrecondition(HaplaneError):
    """FAILED_PRECONDITION without a more specific reason."""


class NotMaster(FailedPrecondition):
    """FAILED_PRECONDITION from a non-master (reason NOT_MASTER); ``master`` is the master that
    node named, if any."""

    @property
    def master(self) -> Optional[MasterRef]:
        return MasterRef.from_wire(
            self.error_metadata.get("masterId", ""), self.error_metadata.get("masterUri", "")
        )


class StateNotLoaded(FailedPrecondition):
    """FAILED_PRECONDITION, reason STATE_NOT_LOADED: the node holds no managed state."""


class Unavailable(HaplaneError):
    """UNAVAILABLE: the node is unreachable, stopping, or its store is."""


class OutcomeUnknown(HaplaneError):
    """A call that is not repeated (not idempotent) broke on the way: it may or may not have
    been applied. ``code`` is the transport's code (UNAVAILABLE, UNKNOWN, CANCELLED...)."""


class DeadlineExceeded(HaplaneError):
    """DEADLINE_EXCEEDED."""


class Unauthenticated(HaplaneError):
    """UNAUTHENTICATED: missing or wrong credentials."""


class PermissionDenied(HaplaneError):
    """PERMISSION_DENIED."""


class ResourceExhausted(HaplaneError):
    """RESOURCE_EXHAUSTED (for example too many watchers)."""


class Compacted(HaplaneError):
    """OUT_OF_RANGE, reason COMPACTED: a watch position no longer kept; list again."""


class DataLoss(HaplaneError):
    """DATA_LOSS, reason STATE_DAMAGED: the managed-state log cannot be read past a position."""


class Internal(HaplaneError):
    """INTERNAL or another server-side failure."""


class Cancelled(HaplaneError):
    """CANCELLED."""


_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.ABORTED: VersionMismatch,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.OUT_OF_RANGE: Compacted,
    grpc.StatusCode.DATA_LOSS: DataLoss,
    grpc.StatusCode.INTERNAL: Internal,
    grpc.StatusCode.CANCELLED: Cancelled,
}

_BY_REASON = {
    Reason.NOT_MASTER: NotMaster,
    Reason.STATE_NOT_LOADED: StateNotLoaded,
    Reason.VERSION_CONFLICT: VersionMismatch,
    Reason.COMPACTED: Compacted,
    Reason.STATE_DAMAGED: DataLoss,
}


def _metadata_dict(*groups: Any) -> Dict[str, Any]:
    found: Dict[str, Any] = {}
    for group in groups:
        for key, value in group or ():
            found.setdefault(key.lower(), value)
    return found


def error_info(details: Optional[bytes]) -> Optional[tuple]:
    """``(reason, metadata)`` of haplane's ErrorInfo in a serialized ``google.rpc.Status``, or
    ``None`` when there is none (or it is of another domain, or unreadable)."""
    if not details:
        return None
    from google.rpc import error_details_pb2, status_pb2

    try:
        status = status_pb2.Status.FromString(details)
    except Exception:  # noqa: BLE001 - an unreadable detail is no detail
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if info.domain == ERROR_DOMAIN:
                return info.reason, dict(info.metadata)
    return None


def from_status(
    code: grpc.StatusCode,
    message: str,
    trailing_metadata: Any = None,
    initial_metadata: Any = None,
) -> HaplaneError:
    """The typed error of a gRPC status and its metadata."""
    metadata = _metadata_dict(trailing_metadata, initial_metadata)
    info = error_info(metadata.get(_DETAILS_TRAILER))
    reason, fields = info if info else (None, {})
    if code == grpc.StatusCode.FAILED_PRECONDITION and reason is None and MASTER_ID_METADATA in metadata:
        # A not-master refusal without the detail still names the master in metadata.
        reason = Reason.NOT_MASTER
        fields = {
            "masterId": str(metadata.get(MASTER_ID_METADATA, "")),
            "masterUri": str(metadata.get(MASTER_URI_METADATA, "")),
        }
    cls = _BY_REASON.get(reason) if reason else None
    if cls is None:
        cls = _BY_CODE.get(code, HaplaneError)
    return cls(message, code=code, reason=reason, error_metadata=fields)


def from_rpc_error(error: grpc.RpcError) -> HaplaneError:
    """The typed error of a failed gRPC call (``grpc.aio.AioRpcError`` or a sync ``grpc.Call``)."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    trailing = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    initial = error.initial_metadata() if hasattr(error, "initial_metadata") else None
    return from_status(code, details or "", trailing, initial)


def is_not_master(error: HaplaneError) -> bool:
    """Whether ``error`` is a non-master's refusal (the call was not applied)."""
    return isinstance(error, NotMaster)


def outcome_unknown(error: HaplaneError) -> HaplaneError:
    """The error of a call that is not tried again: a refusal is the server's answer; a call that
    broke on the way may or may not have been applied."""
    if error.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED):
        return OutcomeUnknown(error.message, code=error.code, reason=error.reason)
    return error
