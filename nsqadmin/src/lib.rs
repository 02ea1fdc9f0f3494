//! nsqadmin, the web UI. Not built yet: it arrives with the nsqadmin issue.
