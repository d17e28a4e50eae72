"""The demo and the simulator, kept out of the production layers.

``broker`` (the embedded MQTT broker), ``simulation`` (scenarios and the
simulated Shelly, pure), ``simulate`` (``iot-bridge simulate``), ``run``
(``iot-bridge demo``) and ``views`` (its terminal). Production modules never
import this package; only the command line dispatches to it, lazily.
"""
