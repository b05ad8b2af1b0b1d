"""OBIS codes of the COSEM objects the simulator speaks about (IS 15959 Part 2)."""

from enum import StrEnum


class Obis(StrEnum):
    CLOCK = "0.0.1.0.0.255"
    BLOCK_LOAD_PROFILE = "1.0.99.1.0.255"
    AVERAGE_VOLTAGE = "1.0.12.27.0.255"
    AVERAGE_CURRENT = "1.0.11.27.0.255"
    VOLTAGE_R = "1.0.32.27.0.255"
    VOLTAGE_Y = "1.0.52.27.0.255"
    VOLTAGE_B = "1.0.72.27.0.255"
    CURRENT_R = "1.0.31.27.0.255"
    CURRENT_Y = "1.0.51.27.0.255"
    CURRENT_B = "1.0.71.27.0.255"
    BLOCK_KWH_IMPORT = "1.0.1.29.0.255"
    BLOCK_KWH_EXPORT = "1.0.2.29.0.255"
    BLOCK_KVARH_Q1 = "1.0.5.29.0.255"
    BLOCK_KVARH_Q2 = "1.0.6.29.0.255"
    BLOCK_KVARH_Q3 = "1.0.7.29.0.255"
    BLOCK_KVARH_Q4 = "1.0.8.29.0.255"
    BLOCK_KVAH_IMPORT = "1.0.9.29.0.255"
    BLOCK_KVAH_EXPORT = "1.0.10.29.0.255"
