# إجابات قد تعطيها أي خدمة.

internal = خطأ داخلي؛ أُبلغ المشغلون
storage-unavailable = التخزين غير متاح؛ أعد المحاولة
storage-unavailable-resubmit = التخزين غير متاح؛ أعد المحاولة بالقيمة نفسها في submission_id
bus-unavailable = ناقل الرسائل غير متاح؛ أعد المحاولة

# الجاهزية (/readyz على telemetry.metrics_listen): ما يمنع العملية من قبول العمل.
ready-ok = جاهز: PostgreSQL و RabbitMQ متاحان، واكتملت عمليات الترحيل وتعريف الطوابير
ready-starting = ما زال يبدأ: { $components } (لم تكتمل عمليات الترحيل وتعريف الطوابير بعد)
ready-database-down = تعذّر الوصول إلى PostgreSQL (database.url): لا يُقبل أي عمل حتى يستجيب من جديد
ready-broker-down = تعذّر الوصول إلى RabbitMQ (bus.url): لا يُقبل أي عمل حتى يستجيب من جديد
