-- One database per service; no service reads another's tables.
CREATE DATABASE intake OWNER salvage;
CREATE DATABASE tracking OWNER salvage;
CREATE DATABASE ledger OWNER salvage;
CREATE DATABASE trading OWNER salvage;
