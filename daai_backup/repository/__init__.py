"""One tenant's backup folder, as ``docs/format.md`` specifies it: backup file names
(:mod:`.names`), the folder and its layout (:mod:`.folder`), the backup list
(:mod:`.catalog`), verification records (:mod:`.verification`) and quotas (:mod:`.quota`)."""
