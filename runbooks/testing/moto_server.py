"""moto's server with one behaviour corrected. Test tooling.

moto 5.2.1's PromoteReadReplica clears its internal replica flag but keeps
answering ReadReplicaSourceDBInstanceIdentifier, and keeps the promoted
instance in its source's ReadReplicaDBInstanceIdentifiers. RDS drops both:
that is how a caller (and DR-PromoteReplicaAndFailover) tells a promoted
instance from a replica. Everything else is moto as released.

usage: python3 moto_server.py -H 127.0.0.1 -p PORT   (moto.server's options)
"""

import sys

from moto.rds import models
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

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
