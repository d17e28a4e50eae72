# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""What the addon knows of the bridge, without Odoo: its rules, its events, its HTTP API.

``rules`` checks a device and a broker the way the bridge's ``POST /config``
does (CONTRACT sections 2 and 4), so Odoo refuses on save what the bridge
would refuse on push. ``events`` reads one EVENT of CONTRACT section 6;
``effects`` says what an event changes in its session and its machine's live
state (both event routes apply events with it).
``client`` talks to the bridge's HTTP API (``POST /config``, ``GET /health``).
"""
