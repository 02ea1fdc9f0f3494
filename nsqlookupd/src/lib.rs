//! nsqlookupd, the topology directory. Not built yet: it arrives with the lookupd issue.
