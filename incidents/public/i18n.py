"""The public pages' message catalogue and language choice: ``?lang=`` first, then the
browser's Accept-Language, then English. A language is a dict of the same keys (checked by
tests/incidents/public); adding one is adding a dict here."""

from __future__ import annotations

DEFAULT = "en"

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "lang_name": "English",
        "site": "Public safety information",
        "skip": "Skip to content",
        "map_title": "Crime map: recent incidents",
        "map_intro": "Closed incidents of the types this agency publishes, at least {delay} "
                     "after they closed. Locations are shown by hundred block or intersection.",
        "map_label": "Map of the incidents listed below",
        "col_number": "Incident number", "col_type": "Type", "col_received": "Received",
        "col_location": "Location", "col_response": "Response initiated",
        "none": "No published incidents.",
        "yes": "Yes", "no": "No",
        "rfs_title": "Request-for-service lookup",
        "rfs_intro": "Public request-for-service data (Minnesota Statutes 13.82, subdivision 3): "
                     "the nature of the request, its date and time, whether a response was "
                     "initiated and the incident number. The caller's identity is withheld.",
        "rfs_number": "Incident number", "rfs_date": "Date", "rfs_find": "Look up",
        "rfs_not_found": "No public request for service with that number.",
        "rfs_day": "Requests received on {day}",
        "downloads": "Download the data", "languages": "Language",
        "nav_map": "Crime map", "nav_rfs": "Request-for-service lookup",
        "hour": "one hour", "hours": "{n} hours", "minutes": "{n} minutes",
        "block": "{n} Block of {street}",
        "newer": "Newer incidents", "older": "Older incidents", "pages": "Pages",
        "nav_alerts": "Community alerts",
        "alerts_title": "Community alerts in force",
        "alerts_intro": "Alerts this agency has issued that are in force now. Each alert is also "
                        "published as an OASIS CAP 1.2 message, and in the feeds below.",
        "alerts_none": "No alerts are in force.",
        "alert_update": "Updated alert",
        "alert_area": "Area", "alert_severity": "Severity", "alert_urgency": "Urgency",
        "alert_sent": "Issued", "alert_expires": "Expires", "alert_never": "until cancelled",
        "alert_instruction": "What to do", "alert_cap": "CAP message",
        "alert_feeds": "Follow the alerts",
        "sev_Extreme": "Extreme", "sev_Severe": "Severe", "sev_Moderate": "Moderate",
        "sev_Minor": "Minor", "sev_Unknown": "Unknown",
        "urg_Immediate": "Immediate", "urg_Expected": "Expected", "urg_Future": "Future",
        "urg_Past": "Past", "urg_Unknown": "Unknown",
    },
    "es": {
        "lang_name": "Español",
        "site": "Información de seguridad pública",
        "skip": "Saltar al contenido",
        "map_title": "Mapa del delito: incidentes recientes",
        "map_intro": "Incidentes cerrados de los tipos que esta agencia publica, al menos {delay} "
                     "después de su cierre. Las ubicaciones se muestran por cuadra o intersección.",
        "map_label": "Mapa de los incidentes de la lista siguiente",
        "col_number": "Número de incidente", "col_type": "Tipo", "col_received": "Recibido",
        "col_location": "Ubicación", "col_response": "Respuesta iniciada",
        "none": "No hay incidentes publicados.",
        "yes": "Sí", "no": "No",
        "rfs_title": "Consulta de solicitudes de servicio",
        "rfs_intro": "Datos públicos de solicitudes de servicio (Estatutos de Minnesota 13.82, "
                     "subdivisión 3): la naturaleza de la solicitud, su fecha y hora, si se inició "
                     "una respuesta y el número de incidente. La identidad de quien llamó se "
                     "reserva.",
        "rfs_number": "Número de incidente", "rfs_date": "Fecha", "rfs_find": "Buscar",
        "rfs_not_found": "No hay una solicitud de servicio pública con ese número.",
        "rfs_day": "Solicitudes recibidas el {day}",
        "downloads": "Descargar los datos", "languages": "Idioma",
        "nav_map": "Mapa del delito", "nav_rfs": "Consulta de solicitudes de servicio",
        "hour": "una hora", "hours": "{n} horas", "minutes": "{n} minutos",
        "block": "Cuadra {n} de {street}",
        "newer": "Incidentes más recientes", "older": "Incidentes anteriores", "pages": "Páginas",
        "nav_alerts": "Alertas comunitarias",
        "alerts_title": "Alertas comunitarias vigentes",
        "alerts_intro": "Alertas emitidas por esta agencia que están vigentes ahora. Cada alerta "
                        "se publica también como mensaje OASIS CAP 1.2 y en los canales siguientes.",
        "alerts_none": "No hay alertas vigentes.",
        "alert_update": "Alerta actualizada",
        "alert_area": "Zona", "alert_severity": "Gravedad", "alert_urgency": "Urgencia",
        "alert_sent": "Emitida", "alert_expires": "Vence", "alert_never": "hasta su cancelación",
        "alert_instruction": "Qué hacer", "alert_cap": "Mensaje CAP",
        "alert_feeds": "Seguir las alertas",
        "sev_Extreme": "Extrema", "sev_Severe": "Grave", "sev_Moderate": "Moderada",
        "sev_Minor": "Menor", "sev_Unknown": "Desconocida",
        "urg_Immediate": "Inmediata", "urg_Expected": "Esperada", "urg_Future": "Futura",
        "urg_Past": "Pasada", "urg_Unknown": "Desconocida",
    },
}


def choose(lang: str | None, accept_language: str | None) -> str:
    """The page's language: a known ``?lang=``, else the best known Accept-Language entry."""
    if lang and lang.lower() in MESSAGES:
        return lang.lower()
    best, best_q = DEFAULT, -1.0
    for i, part in enumerate((accept_language or "").split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in MESSAGES and q > best_q and q > 0:
            best, best_q = primary, q - i * 1e-6
    return best


def delay_text(messages: dict[str, str], delay_s: float) -> str:
    if delay_s >= 3600 and delay_s % 3600 == 0:
        n = int(delay_s // 3600)
        return messages["hour"] if n == 1 else messages["hours"].format(n=n)
    return messages["minutes"].format(n=round(delay_s / 60))
