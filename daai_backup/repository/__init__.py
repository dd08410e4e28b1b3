"""One tenant's backup folder, as ``docs/format.md`` ("The tenant folder") specifies it:
backup file names (:mod:`.names`), the name of every object in the folder (:mod:`.layout`),
reading and writing the folder (:mod:`.folder`), the backup list (:mod:`.catalog`),
manifests (:mod:`.manifest`), the listing index (:mod:`.index`), verification records
(:mod:`.verification`) and quotas (:mod:`.quota`)."""
