#!/bin/sh
# Write Mosquitto's password file from the environment, then run the broker. The aggregator's
# feeds log in as `ioc-aggregator`, the simulator as `ioc-simulator`, both with MQTT_PASSWORD.
set -eu
: "${MQTT_PASSWORD:?set MQTT_PASSWORD (see .env.example)}"
mkdir -p /mosquitto/passwords
rm -f /mosquitto/passwords/passwords
touch /mosquitto/passwords/passwords
chmod 0700 /mosquitto/passwords/passwords
for user in ioc-aggregator ioc-simulator; do
  mosquitto_passwd -b /mosquitto/passwords/passwords "$user" "$MQTT_PASSWORD"
done
chown -R mosquitto:mosquitto /mosquitto/passwords
exec mosquitto -c /mosquitto/config/mosquitto.conf
