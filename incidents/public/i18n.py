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


# --- online reports (incidents.reports.pages) ------------------------------------------------
_REPORTS: dict[str, dict[str, str]] = {
    "en": {
        "nav_report": "Report a non-emergency",
        "report_title": "Report a non-emergency",
        "report_emergency": "In an emergency, call 911. This form is not watched around the clock.",
        "report_intro": "Use this form for matters with no one in danger and no suspect present: "
                        "a theft, a break-in to a vehicle, vandalism, lost property, noise or an "
                        "abandoned vehicle. You get a tracking number to check the status.",
        "report_type": "Type of report", "report_choose": "Choose one",
        "rt_theft": "Theft", "rt_vehicle_breakin": "Vehicle break-in", "rt_vandalism": "Vandalism",
        "rt_lost_property": "Lost property", "rt_noise": "Noise",
        "rt_abandoned_vehicle": "Abandoned vehicle", "rt_other": "Other",
        "report_description": "What happened",
        "report_description_hint": "At least 10 characters. Describe what happened and what "
                                   "was taken or damaged.",
        "report_address": "Where it happened",
        "report_address_hint": "A street address, an intersection or a description of the place.",
        "report_occurred": "When it happened (if known)",
        "report_contact": "How we can reach you (optional)",
        "report_contact_hint": "Only staff reviewing the report see this. It is never published.",
        "report_contact_name": "Name", "report_contact_phone": "Phone number",
        "report_contact_email": "Email address",
        "report_send": "Send the report",
        "report_working": "Sending the report…",
        "report_errors": "Please correct the following",
        "err_report_type": "Choose the type of report.",
        "err_description": "Describe what happened in 10 to 4,000 characters.",
        "err_address": "Say where it happened (3 to 200 characters).",
        "err_address_area": "That place is outside this agency's area.",
        "err_occurred": "Give a valid date and time, not in the future.",
        "err_contact_name": "The name is too long.",
        "err_contact_phone": "Give a phone number with digits only (and + ( ) - . spaces).",
        "err_contact_email": "Give a valid email address.",
        "err_lang": "Unknown language.", "err_form": "The form could not be read; try again.",
        "err_too_soon": "The form was sent very quickly. Please check it and send it again.",
        "err_used": "This form was already sent. Your text is kept: send it again.",
        "err_expired": "The form expired. Your text is kept: send it again.",
        "err_challenge": "The form could not be verified. Your text is kept: send it again.",
        "err_limit": "Too many reports were sent from your connection. Please try again later "
                     "or call the non-emergency number.",
        "err_generic": "The report could not be accepted. Please check it and try again.",
        "status_title": "Check a report's status",
        "status_intro": "Enter the tracking number you received when you filed the report.",
        "status_tracking": "Tracking number", "status_find": "Check status",
        "status_not_found": "No report with that tracking number.",
        "status_filed": "Your report was received. Your tracking number is {tracking}. Keep it "
                        "to check the status.",
        "status_caption": "Report status", "status_status": "Status",
        "status_submitted": "Filed", "status_decided": "Decided", "status_reason": "Reason",
        "st_received": "Received, waiting for review", "st_accepted": "Accepted",
        "st_declined": "Declined",
    },
    "es": {
        "nav_report": "Reportar algo que no es una emergencia",
        "report_title": "Reportar algo que no es una emergencia",
        "report_emergency": "En una emergencia, llame al 911. Este formulario no se atiende a "
                            "toda hora.",
        "report_intro": "Use este formulario cuando nadie esté en peligro y no haya un sospechoso "
                        "presente: un robo, un vehículo forzado, vandalismo, objetos perdidos, "
                        "ruido o un vehículo abandonado. Recibirá un número de seguimiento para "
                        "consultar el estado.",
        "report_type": "Tipo de reporte", "report_choose": "Elija uno",
        "rt_theft": "Robo", "rt_vehicle_breakin": "Vehículo forzado", "rt_vandalism": "Vandalismo",
        "rt_lost_property": "Objetos perdidos", "rt_noise": "Ruido",
        "rt_abandoned_vehicle": "Vehículo abandonado", "rt_other": "Otro",
        "report_description": "Qué pasó",
        "report_description_hint": "Al menos 10 caracteres. Describa lo que pasó y lo que se "
                                   "llevaron o dañaron.",
        "report_address": "Dónde pasó",
        "report_address_hint": "Una dirección, una intersección o una descripción del lugar.",
        "report_occurred": "Cuándo pasó (si lo sabe)",
        "report_contact": "Cómo podemos comunicarnos con usted (opcional)",
        "report_contact_hint": "Solo lo ve el personal que revisa el reporte. Nunca se publica.",
        "report_contact_name": "Nombre", "report_contact_phone": "Teléfono",
        "report_contact_email": "Correo electrónico",
        "report_send": "Enviar el reporte",
        "report_working": "Enviando el reporte…",
        "report_errors": "Corrija lo siguiente",
        "err_report_type": "Elija el tipo de reporte.",
        "err_description": "Describa lo que pasó en 10 a 4000 caracteres.",
        "err_address": "Indique dónde pasó (3 a 200 caracteres).",
        "err_address_area": "Ese lugar está fuera del área de esta agencia.",
        "err_occurred": "Indique una fecha y hora válidas, no en el futuro.",
        "err_contact_name": "El nombre es demasiado largo.",
        "err_contact_phone": "Indique un teléfono solo con dígitos (y + ( ) - . espacios).",
        "err_contact_email": "Indique un correo electrónico válido.",
        "err_lang": "Idioma desconocido.",
        "err_form": "No se pudo leer el formulario; inténtelo de nuevo.",
        "err_too_soon": "El formulario se envió muy rápido. Revíselo y envíelo de nuevo.",
        "err_used": "Este formulario ya se envió. Su texto se conserva: envíelo de nuevo.",
        "err_expired": "El formulario venció. Su texto se conserva: envíelo de nuevo.",
        "err_challenge": "No se pudo verificar el formulario. Su texto se conserva: envíelo de "
                         "nuevo.",
        "err_limit": "Se enviaron demasiados reportes desde su conexión. Inténtelo más tarde o "
                     "llame al número que no es de emergencia.",
        "err_generic": "No se pudo aceptar el reporte. Revíselo e inténtelo de nuevo.",
        "status_title": "Consultar el estado de un reporte",
        "status_intro": "Escriba el número de seguimiento que recibió al enviar el reporte.",
        "status_tracking": "Número de seguimiento", "status_find": "Consultar",
        "status_not_found": "No hay un reporte con ese número de seguimiento.",
        "status_filed": "Recibimos su reporte. Su número de seguimiento es {tracking}. "
                        "Guárdelo para consultar el estado.",
        "status_caption": "Estado del reporte", "status_status": "Estado",
        "status_submitted": "Enviado", "status_decided": "Decidido", "status_reason": "Motivo",
        "st_received": "Recibido, en espera de revisión", "st_accepted": "Aceptado",
        "st_declined": "Rechazado",
    },
}
for _code, _messages in _REPORTS.items():
    MESSAGES[_code].update(_messages)
# --- feedback, compliments and complaints (incidents.feedback.pages) -------------------------
FEEDBACK_MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "nav_feedback": "Feedback and complaints",
        "fb_title": "Feedback, compliments and complaints",
        "fb_intro": "Tell us about an officer, a call or our service. This form is not for "
                    "emergencies: call 911.",
        "fb_privacy": "Your name and contact details are seen only by the staff who handle "
                      "your feedback and are never published. You may stay anonymous.",
        "fb_category": "What is it?", "fb_compliment": "A compliment",
        "fb_complaint": "A complaint", "fb_suggestion": "A suggestion", "fb_other": "Something else",
        "fb_subcategory": "For a complaint: what is it about?", "fb_sub_none": "(choose)",
        "fb_sub_conduct": "Conduct", "fb_sub_courtesy": "Courtesy",
        "fb_sub_use_of_force": "Use of force", "fb_sub_discrimination": "Discrimination",
        "fb_sub_response_time": "Response time", "fb_sub_service_quality": "Quality of service",
        "fb_sub_property": "Property", "fb_sub_policy": "A policy", "fb_sub_other": "Other",
        "fb_description": "What happened?", "fb_incident": "Incident number (if known)",
        "fb_unit": "Unit or badge number (if known)", "fb_when": "When did it happen?",
        "fb_contact": "How can we reach you? (optional)", "fb_name": "Name", "fb_email": "Email",
        "fb_phone": "Phone", "fb_send": "Send",
        "fb_errors": "Please correct the following:",
        "fb_err_category": "Choose what it is.",
        "fb_err_subcategory": "Only a complaint has a subject; choose one from the list.",
        "fb_err_description": "Say what happened (at most 5,000 characters).",
        "fb_err_incident_number": "An incident number has letters, digits and dashes only.",
        "fb_err_unit": "A unit or badge number has letters, digits and dashes only.",
        "fb_err_occurred_at": "Give a date and time in the past ten years.",
        "fb_err_name": "The name is too long.",
        "fb_err_email": "Give a valid email address, or leave it empty.",
        "fb_err_phone": "Give a phone number with digits (and + ( ) - . spaces), or leave it "
                        "empty.",
        "fb_err_form": "The form could not be read; please send it again.",
        "fb_err_too_soon": "The form was sent very quickly. Please check it and send it again.",
        "fb_err_used": "This form was already sent. Your text is kept: send it again.",
        "fb_err_expired": "The form expired. Your text is kept: send it again.",
        "fb_err_challenge": "The form could not be verified. Your text is kept: send it again.",
        "fb_err_limit": "Too many messages were sent from your connection. Please try again "
                        "later.",
        "fb_thanks": "Thank you. We received your feedback.",
        "fb_reference": "Your reference", "fb_keep": "Keep this reference: it is the only way "
                                                     "to follow your feedback online.",
        "fb_ack_by": "We will acknowledge it by", "fb_resolve_by": "and aim to resolve it by",
        "fb_status_title": "Follow your feedback", "fb_status_find": "Show the status",
        "fb_status_not_found": "No feedback with that reference.",
        "fb_status": "Status", "fb_received": "Received", "fb_acknowledged": "Acknowledged",
        "fb_resolved": "Resolved", "fb_closed": "Closed", "fb_outcome": "Outcome",
        "fb_response": "Our answer",
        "fb_st_received": "Received", "fb_st_assigned": "Assigned to a supervisor",
        "fb_st_investigating": "Under investigation", "fb_st_resolved": "Resolved",
        "fb_st_closed": "Closed",
        "fb_stats_title": "Feedback received, by month",
        "fb_stats_intro": "Counts below {k} are not shown (“fewer than {k}”), and neither is a "
                          "count that could be worked out from the others, so that no person "
                          "can be recognised.",
        "fb_month": "Month", "fb_col_category": "Category", "fb_col_received": "Received",
        "fb_col_outcomes": "Outcomes", "fb_fewer": "fewer than {k}", "fb_hidden": "not shown",
        "fb_no_stats": "No feedback received in this period.",
        "oc_pending": "Pending", "oc_sustained": "Sustained", "oc_not_sustained": "Not sustained",
        "oc_exonerated": "Exonerated", "oc_unfounded": "Unfounded",
        "oc_policy_failure": "Policy failure", "oc_informally_resolved": "Resolved informally",
        "oc_forwarded": "Forwarded to the member", "oc_acknowledged": "Acknowledged",
        "oc_adopted": "Adopted", "oc_considered": "Considered", "oc_answered": "Answered",
        "oc_referred": "Referred", "oc_withdrawn": "Withdrawn", "oc_duplicate": "Duplicate",
        "oc_outside_jurisdiction": "Outside our jurisdiction",
        "oc_insufficient_information": "Insufficient information",
    },
    "es": {
        "nav_feedback": "Comentarios y quejas",
        "fb_title": "Comentarios, felicitaciones y quejas",
        "fb_intro": "Cuéntenos sobre un agente, una llamada o nuestro servicio. Este formulario "
                    "no es para emergencias: llame al 911.",
        "fb_privacy": "Su nombre y sus datos de contacto solo los ve el personal que atiende "
                      "sus comentarios y nunca se publican. Puede permanecer en el anonimato.",
        "fb_category": "¿De qué se trata?", "fb_compliment": "Una felicitación",
        "fb_complaint": "Una queja", "fb_suggestion": "Una sugerencia", "fb_other": "Otra cosa",
        "fb_subcategory": "Para una queja: ¿sobre qué es?", "fb_sub_none": "(elija)",
        "fb_sub_conduct": "Conducta", "fb_sub_courtesy": "Cortesía",
        "fb_sub_use_of_force": "Uso de la fuerza", "fb_sub_discrimination": "Discriminación",
        "fb_sub_response_time": "Tiempo de respuesta",
        "fb_sub_service_quality": "Calidad del servicio", "fb_sub_property": "Bienes",
        "fb_sub_policy": "Una política", "fb_sub_other": "Otro",
        "fb_description": "¿Qué pasó?", "fb_incident": "Número de incidente (si lo sabe)",
        "fb_unit": "Número de unidad o de placa (si lo sabe)", "fb_when": "¿Cuándo pasó?",
        "fb_contact": "¿Cómo podemos contactarle? (opcional)", "fb_name": "Nombre",
        "fb_email": "Correo electrónico", "fb_phone": "Teléfono", "fb_send": "Enviar",
        "fb_errors": "Corrija lo siguiente:",
        "fb_err_category": "Elija de qué se trata.",
        "fb_err_subcategory": "Solo una queja tiene un tema; elija uno de la lista.",
        "fb_err_description": "Diga qué pasó (como máximo 5000 caracteres).",
        "fb_err_incident_number": "Un número de incidente tiene solo letras, dígitos y guiones.",
        "fb_err_unit": "Un número de unidad o de placa tiene solo letras, dígitos y guiones.",
        "fb_err_occurred_at": "Indique una fecha y hora de los últimos diez años.",
        "fb_err_name": "El nombre es demasiado largo.",
        "fb_err_email": "Indique un correo electrónico válido o déjelo vacío.",
        "fb_err_phone": "Indique un teléfono con dígitos (y + ( ) - . espacios) o déjelo vacío.",
        "fb_err_form": "No se pudo leer el formulario; envíelo de nuevo.",
        "fb_err_too_soon": "El formulario se envió muy rápido. Revíselo y envíelo de nuevo.",
        "fb_err_used": "Este formulario ya se envió. Su texto se conserva: envíelo de nuevo.",
        "fb_err_expired": "El formulario venció. Su texto se conserva: envíelo de nuevo.",
        "fb_err_challenge": "No se pudo verificar el formulario. Su texto se conserva: envíelo "
                            "de nuevo.",
        "fb_err_limit": "Se enviaron demasiados mensajes desde su conexión. Inténtelo más tarde.",
        "fb_thanks": "Gracias. Recibimos sus comentarios.",
        "fb_reference": "Su referencia", "fb_keep": "Guarde esta referencia: es la única forma "
                                                    "de seguir sus comentarios en línea.",
        "fb_ack_by": "Acusaremos recibo a más tardar el",
        "fb_resolve_by": "y procuraremos resolverlo a más tardar el",
        "fb_status_title": "Seguimiento de sus comentarios", "fb_status_find": "Ver el estado",
        "fb_status_not_found": "No hay comentarios con esa referencia.",
        "fb_status": "Estado", "fb_received": "Recibido", "fb_acknowledged": "Acuse de recibo",
        "fb_resolved": "Resuelto", "fb_closed": "Cerrado", "fb_outcome": "Resultado",
        "fb_response": "Nuestra respuesta",
        "fb_st_received": "Recibido", "fb_st_assigned": "Asignado a un supervisor",
        "fb_st_investigating": "En investigación", "fb_st_resolved": "Resuelto",
        "fb_st_closed": "Cerrado",
        "fb_stats_title": "Comentarios recibidos, por mes",
        "fb_stats_intro": "No se muestran los recuentos menores de {k} («menos de {k}»), ni un "
                          "recuento que podría deducirse de los demás, para que nadie pueda "
                          "ser reconocido.",
        "fb_month": "Mes", "fb_col_category": "Categoría", "fb_col_received": "Recibidos",
        "fb_col_outcomes": "Resultados", "fb_fewer": "menos de {k}", "fb_hidden": "no se muestra",
        "fb_no_stats": "No se recibieron comentarios en este período.",
        "oc_pending": "Pendiente", "oc_sustained": "Fundada", "oc_not_sustained": "No probada",
        "oc_exonerated": "Exonerado", "oc_unfounded": "Infundada",
        "oc_policy_failure": "Falla de la política", "oc_informally_resolved": "Resuelta de "
                                                                             "manera informal",
        "oc_forwarded": "Enviada al agente", "oc_acknowledged": "Agradecida",
        "oc_adopted": "Adoptada", "oc_considered": "Considerada", "oc_answered": "Respondida",
        "oc_referred": "Remitida", "oc_withdrawn": "Retirada", "oc_duplicate": "Duplicada",
        "oc_outside_jurisdiction": "Fuera de nuestra jurisdicción",
        "oc_insufficient_information": "Información insuficiente",
    },
}
for _lang, _messages in FEEDBACK_MESSAGES.items():
    MESSAGES[_lang].update(_messages)
