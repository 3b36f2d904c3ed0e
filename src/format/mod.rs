//! Output formats and their framing (json, ecs, gelf, syslog) and oversize-event truncation.
