"""CloudFormation templates as data: reading YAML with the short intrinsic
tags (`!Ref`, `!Sub`, ...), and resolving a template for one set of
parameters the way CloudFormation would before it calls the services.

package.py reads the hand-written template with `load`; the checks in
tests/ `resolve` it for test parameters, to read the policies and settings
it would create. The resolver covers the intrinsics the templates here use
(Ref, Sub, GetAtt of the attributes named in ATTRIBUTES, Join, Select,
Split, If, Equals, Not, And, Or, Condition, AWS::NoValue) and refuses any
other, so a template that grows a new one fails its tests instead of being
read wrong.
"""

import copy
import re

import yaml

_FUNCTIONS = (
    "And Base64 Cidr Contains Equals FindInMap GetAZs If ImportValue Join Not Or "
    "Select Split Sub Transform ToJsonString Length"
).split()


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads the short intrinsic tags as their long form."""


def _tag(name):
    def construct(loader, node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        if name == "Ref":
            return {"Ref": value}
        if name == "Condition":
            return {"Condition": value}
        if name == "GetAtt" and isinstance(value, str):
            resource, _, attribute = value.partition(".")
            return {"Fn::GetAtt": [resource, attribute]}
        return {f"Fn::{name}": value}

    return construct


for _name in _FUNCTIONS + ["Ref", "GetAtt", "Condition"]:
    _Loader.add_constructor(f"!{_name}", _tag(_name))


def load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=_Loader)


def loads(text):
    return yaml.load(text, Loader=_Loader)


class Unsupported(Exception):
    """An intrinsic (or attribute) the resolver does not know."""


NO_VALUE = object()

# What GetAtt returns for the resource types whose attributes the templates
# use: physical names follow the resolved properties, as they do in AWS.
ATTRIBUTES = {
    ("AWS::IAM::Role", "Arn"): lambda p, c: f"arn:{c['partition']}:iam::{c['account']}:role/{p['RoleName']}",
    ("AWS::KMS::Key", "Arn"): lambda p, c: f"arn:{c['partition']}:kms:{c['region']}:{c['account']}:key/mrk-{c['logical']}",
    ("AWS::S3::Bucket", "Arn"): lambda p, c: f"arn:{c['partition']}:s3:::{p['BucketName']}",
    ("AWS::Lambda::Function", "Arn"): lambda p, c: f"arn:{c['partition']}:lambda:{c['region']}:{c['account']}:function:{p['FunctionName']}",
}

# What Ref returns for resources: their physical name, where the
# properties give it.
NAME_PROPERTY = {
    "AWS::IAM::Role": lambda p: p.get("RoleName"),
    "AWS::S3::Bucket": lambda p: p.get("BucketName"),
    "AWS::Glue::Database": lambda p: p["DatabaseInput"].get("Name"),
    "AWS::SSM::Document": lambda p: p.get("Name"),
    "AWS::Lambda::Function": lambda p: p.get("FunctionName"),
    "AWS::Athena::WorkGroup": lambda p: p.get("Name"),
    "AWS::Logs::LogGroup": lambda p: p.get("LogGroupName"),
    # A replica has its primary's key id.
    "AWS::KMS::ReplicaKey": lambda p: p["PrimaryKeyArn"].split("/")[-1],
}


class Resolved:
    """A template resolved for one region, account and parameter set:
    `resources` holds only what its conditions create, every property
    resolved."""

    def __init__(self, template, parameters, region, account="123456789012", partition="aws"):
        self.template = template
        self.ctx = {"region": region, "account": account, "partition": partition}
        self.pseudo = {
            "AWS::Region": region,
            "AWS::AccountId": account,
            "AWS::Partition": partition,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": "dr-reactor",
            "AWS::NoValue": NO_VALUE,
        }
        self.parameters = {}
        for name, spec in template.get("Parameters", {}).items():
            if name in parameters:
                value = parameters[name]
            elif "Default" in spec:
                value = spec["Default"]
            else:
                raise KeyError(f"parameter {name} has no default and no value")
            if spec.get("Type") == "CommaDelimitedList" and isinstance(value, str):
                value = value.split(",")
            self.parameters[name] = value
        unknown = set(parameters) - set(self.parameters)
        if unknown:
            raise KeyError(f"unknown parameters {sorted(unknown)}")
        self.conditions = {}
        for name in template.get("Conditions", {}):
            self.condition(name)
        self._raw = template.get("Resources", {})
        self._done = {}
        self.resources = {
            logical: self.resource(logical)
            for logical, r in self._raw.items()
            if "Condition" not in r or self.condition(r["Condition"])
        }
        self.outputs = {
            name: self.value(o["Value"])
            for name, o in template.get("Outputs", {}).items()
            if "Condition" not in o or self.condition(o["Condition"])
        }

    def condition(self, name):
        if name not in self.conditions:
            self.conditions[name] = None  # a cycle reads as an error below
            self.conditions[name] = bool(self.value(self.template["Conditions"][name]))
        if self.conditions[name] is None:
            raise Unsupported(f"condition {name} refers to itself")
        return self.conditions[name]

    def resource(self, logical):
        if logical not in self._done:
            r = copy.deepcopy(self._raw[logical])
            r["Properties"] = self.value(r.get("Properties", {}))
            self._done[logical] = r
        return self._done[logical]

    def ref(self, name):
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self._raw:
            r = self.resource(name)
            name_of = NAME_PROPERTY.get(r["Type"])
            physical = name_of(r["Properties"]) if name_of else None
            return physical if physical is not None else f"{name}-physical-id"
        raise Unsupported(f"Ref {name}: no such parameter or resource")

    def getatt(self, logical, attribute):
        r = self.resource(logical)
        make = ATTRIBUTES.get((r["Type"], attribute))
        if make is None:
            raise Unsupported(f"GetAtt {logical}.{attribute} ({r['Type']})")
        return make(r["Properties"], dict(self.ctx, logical=logical.lower()))

    def sub(self, text, variables):
        def one(m):
            name = m.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                return str(self.getatt(*name.split(".", 1)))
            value = self.ref(name)
            if isinstance(value, list):
                raise Unsupported(f"Sub ${{{name}}} is a list")
            return str(value)

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def value(self, v):
        if isinstance(v, list):
            out = [self.value(x) for x in v]
            return [x for x in out if x is not NO_VALUE]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            (key, arg), = v.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Condition":
                return self.condition(arg)
            if key.startswith("Fn::"):
                return self.function(key[4:], arg)
        out = {}
        for k, x in v.items():
            x = self.value(x)
            if x is not NO_VALUE:
                out[k] = x
        return out

    def function(self, name, arg):
        if name == "Sub":
            if isinstance(arg, str):
                return self.sub(arg, {})
            text, variables = arg
            return self.sub(text, {k: self.value(x) for k, x in variables.items()})
        if name == "GetAtt":
            return self.getatt(*arg)
        if name == "If":
            cond, yes, no = arg
            return self.value(yes if self.condition(cond) else no)
        if name == "Equals":
            a, b = (self.value(x) for x in arg)
            return a == b
        if name == "Not":
            return not self.value(arg[0])
        if name == "And":
            return all(self.value(x) for x in arg)
        if name == "Or":
            return any(self.value(x) for x in arg)
        if name == "Join":
            sep, items = arg
            items = self.value(items)
            return sep.join(str(x) for x in items)
        if name == "Select":
            index, items = arg
            return self.value(items)[int(self.value(index))]
        if name == "Split":
            sep, text = arg
            return self.value(text).split(sep)
        raise Unsupported(f"Fn::{name}")

    def of_type(self, resource_type):
        return {k: r for k, r in self.resources.items() if r["Type"] == resource_type}
