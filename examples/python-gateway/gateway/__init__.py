"""A plant's Modbus/OPC UA gateway as plants run them today: polls devices into SQLite
and serves the readings over HTTP. The reference the Bifrost migration tools work against."""
