"""Stand-ins for the AWS APIs moto 5.2.1 lacks. Test tooling, named as such.

moto answers 500 (not implemented) for:
- ARC zonal shift (`arc-zonal-shift`): StartZonalShift, ListZonalShifts,
  GetManagedResource, CancelZonalShift;
- ARC routing control data plane (`route53-recovery-cluster`):
  UpdateRoutingControlState(s), GetRoutingControlState;
- Aurora global database failover: RDS FailoverGlobalCluster and
  SwitchoverGlobalCluster (moto stores global clusters but cannot fail them
  over, so DescribeGlobalClusters is answered here too, from the same model).

Each stand-in is a botocore `before-call` handler on a boto3 session: the
request has already passed botocore's own parameter validation against the
service model by then, the stand-in records it exactly as sent (so a test
asserts the request, not a call count), keeps the little state the API has
(a shift is ACTIVE until it expires or is cancelled; a routing control is
On or Off; a global cluster has one writer), and answers with a response
that is itself validated against the operation's output shape. Every other
call of these services, and every other service, still goes to moto.
"""

from __future__ import annotations

import datetime
import re
import uuid

from botocore.awsrequest import AWSResponse
from botocore.validate import validate_parameters

ARN = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:\d{12}:.+$")
AZ_ID = re.compile(r"^[a-z]{3,4}\d-az\d+$")
EXPIRES_IN = re.compile(r"^([1-9][0-9]*)(m|h|d)$")


class StandInError(Exception):
    """Answered as the API's own error (a 400 with its code)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


class ZonalShifts:
    """ARC zonal shift: shifts by resource, ACTIVE until expiry or cancel."""

    def __init__(self):
        self.shifts: list[dict] = []
        self.requests: list[tuple[str, dict]] = []

    def _status(self, s):
        if s["status"] == "ACTIVE" and s["expiryTime"] <= _now():
            s["status"] = "EXPIRED"
        return s["status"]

    def StartZonalShift(self, p):
        if not ARN.match(p["resourceIdentifier"]):
            raise StandInError("ValidationException", "resourceIdentifier must be an ARN")
        if not AZ_ID.match(p["awayFrom"]):
            raise StandInError("ValidationException", "awayFrom must be an Availability Zone ID")
        m = EXPIRES_IN.match(p["expiresIn"])
        if not m:
            raise StandInError("ValidationException", "expiresIn must be like 30m, 12h or 3d")
        minutes = int(m.group(1)) * {"m": 1, "h": 60, "d": 1440}[m.group(2)]
        if not 1 <= minutes <= 3 * 1440:
            raise StandInError("ValidationException", "expiresIn must be between 1 minute and 3 days")
        for s in self.shifts:
            if s["resourceIdentifier"] == p["resourceIdentifier"] and self._status(s) == "ACTIVE":
                raise StandInError("ConflictException", "the resource already has an active zonal shift")
        shift = {
            "zonalShiftId": str(uuid.uuid4()),
            "resourceIdentifier": p["resourceIdentifier"],
            "awayFrom": p["awayFrom"],
            "expiryTime": _now() + datetime.timedelta(minutes=minutes),
            "startTime": _now(),
            "status": "ACTIVE",
            "comment": p["comment"],
        }
        self.shifts.append(shift)
        return dict(shift)

    def ListZonalShifts(self, p):
        items = []
        for s in self.shifts:
            status = self._status(s)
            if p.get("status") and status != p["status"]:
                continue
            if p.get("resourceIdentifier") and s["resourceIdentifier"] != p["resourceIdentifier"]:
                continue
            items.append({**s, "status": status})
        return {"items": items}

    def CancelZonalShift(self, p):
        for s in self.shifts:
            if s["zonalShiftId"] == p["zonalShiftId"]:
                s["status"] = "CANCELED"
                return dict(s)
        raise StandInError("ResourceNotFoundException", "no such zonal shift")


class RoutingControls:
    """ARC routing control data plane: each control On or Off."""

    def __init__(self):
        self.states: dict[str, str] = {}
        self.requests: list[tuple[str, dict]] = []

    def _known(self, arn):
        if arn not in self.states:
            raise StandInError("ResourceNotFoundException", f"routing control {arn} not found")

    def GetRoutingControlState(self, p):
        self._known(p["RoutingControlArn"])
        return {"RoutingControlArn": p["RoutingControlArn"],
                "RoutingControlState": self.states[p["RoutingControlArn"]]}

    def UpdateRoutingControlState(self, p):
        self._known(p["RoutingControlArn"])
        self.states[p["RoutingControlArn"]] = p["RoutingControlState"]
        return {}

    def UpdateRoutingControlStates(self, p):
        for e in p["UpdateRoutingControlStateEntries"]:
            self._known(e["RoutingControlArn"])
        for e in p["UpdateRoutingControlStateEntries"]:
            self.states[e["RoutingControlArn"]] = e["RoutingControlState"]
        return {}


class GlobalClusters:
    """Aurora global databases: members, one writer; failover moves it."""

    def __init__(self):
        self.clusters: dict[str, dict] = {}
        self.requests: list[tuple[str, dict]] = []

    def add(self, identifier: str, writer_arn: str, reader_arns: list[str]):
        self.clusters[identifier] = {
            "GlobalClusterIdentifier": identifier,
            "GlobalClusterArn": f"arn:aws:rds::123456789012:global-cluster:{identifier}",
            "Status": "available",
            "Engine": "aurora-postgresql",
            "GlobalClusterMembers": [{"DBClusterArn": writer_arn, "IsWriter": True}]
            + [{"DBClusterArn": a, "IsWriter": False} for a in reader_arns],
        }

    def DescribeGlobalClusters(self, p):
        ident = p.get("GlobalClusterIdentifier")
        if ident and ident not in self.clusters:
            raise StandInError("GlobalClusterNotFoundFault", f"{ident} not found")
        return {"GlobalClusters": [c for k, c in self.clusters.items() if not ident or k == ident]}

    def _move_writer(self, p, op):
        c = self.clusters.get(p["GlobalClusterIdentifier"])
        if c is None:
            raise StandInError("GlobalClusterNotFoundFault", "global cluster not found")
        target = p["TargetDbClusterIdentifier"]
        if target not in [m["DBClusterArn"] for m in c["GlobalClusterMembers"]]:
            raise StandInError("DBClusterNotFoundFault", f"{target} is not a member")
        if op == "FailoverGlobalCluster" and not p.get("AllowDataLoss") and not p.get("Switchover"):
            raise StandInError("InvalidParameterCombination", "an unplanned failover needs AllowDataLoss")
        for m in c["GlobalClusterMembers"]:
            m["IsWriter"] = m["DBClusterArn"] == target
        return {"GlobalCluster": c}

    def FailoverGlobalCluster(self, p):
        return self._move_writer(p, "FailoverGlobalCluster")

    def SwitchoverGlobalCluster(self, p):
        return self._move_writer(p, "SwitchoverGlobalCluster")


class StandIns:
    def __init__(self):
        self.zonal_shift = ZonalShifts()
        self.routing_control = RoutingControls()
        self.global_clusters = GlobalClusters()
        self.by_service = {
            "arc-zonal-shift": self.zonal_shift,
            "route53-recovery-cluster": self.routing_control,
            "rds": self.global_clusters,
        }

    def capture(self, params, context, **_):
        # before-call sees the serialised request; keep the API's own
        # parameters for the stand-in (botocore validates them in between).
        context["standin_params"] = dict(params)

    def handler(self, model, context, **_):
        service = model.service_model.service_name
        target = self.by_service.get(service)
        op = getattr(target, model.name, None) if target else None
        if op is None or not model.name[0].isupper():
            return None  # not a stand-in operation: on to moto
        params = context.get("standin_params", {})
        target.requests.append((model.name, params))
        try:
            body = op(dict(params))
        except StandInError as e:
            return AWSResponse(None, 400, {}, None), {
                "Error": {"Code": e.code, "Message": str(e)},
                "ResponseMetadata": {"HTTPStatusCode": 400},
            }
        report = validate_parameters(body, model.output_shape) if model.output_shape else None
        if report is not None and report.has_errors():
            raise AssertionError(f"stand-in answer for {model.name} breaks the model: {report.generate_report()}")
        return AWSResponse(None, 200, {}, None), {**body, "ResponseMetadata": {"HTTPStatusCode": 200}}


def install(session) -> StandIns:
    """Serves the stand-in operations for every client `session` makes."""
    s = StandIns()
    session.events.register("before-parameter-build", s.capture, unique_id="dr-runbooks-standin-params")
    session.events.register("before-call", s.handler, unique_id="dr-runbooks-standin")
    return s


def uninstall(session) -> None:
    session.events.unregister("before-parameter-build", unique_id="dr-runbooks-standin-params")
    session.events.unregister("before-call", unique_id="dr-runbooks-standin")
