"""moto's server with two behaviours corrected. Test tooling.

1. moto 5.2.1's PromoteReadReplica clears its internal replica flag but keeps
answering ReadReplicaSourceDBInstanceIdentifier, and keeps the promoted
instance in its source's ReadReplicaDBInstanceIdentifiers. RDS drops both:
that is how a caller (and DR-PromoteReplicaAndFailover) tells a promoted
instance from a replica.
2. moto 5.2.1's SendCommand with InstanceIds and no Targets adds every
instance in the region to the command (it filters the instances by the
empty target list). SSM runs it on the instances named, and the runbooks
name exactly one management host.
Everything else is moto as released.

usage: python3 moto_server.py -H 127.0.0.1 -p PORT   (moto.server's options)
"""

import sys

from moto.rds import models
from moto.ssm import models as ssm_models
from moto.server import main

_promote = models.RDSBackend.promote_read_replica


def promote_read_replica(self, db_kwargs):
    db = self.databases[db_kwargs["db_instance_identifier"]]
    source = db.source_db_instance_identifier if db.is_replica else None
    promoted = _promote(self, db_kwargs)
    if source:
        db.source_db_instance_identifier = None
        try:
            primary = self.find_db_from_id(source)
        except Exception:  # the source's region is gone: nothing to update
            primary = None
        if primary is not None:
            for name in (db.db_instance_arn, db.db_instance_identifier):
                if name in primary.replicas:
                    primary.replicas.remove(name)
    return promoted


models.RDSBackend.promote_read_replica = promote_read_replica

_targets = ssm_models.Command._get_instance_ids_from_targets


def instance_ids_from_targets(self):
    return _targets(self) if self.targets else []


ssm_models.Command._get_instance_ids_from_targets = instance_ids_from_targets

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
