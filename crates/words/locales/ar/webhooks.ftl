# خطافات الجهات (crates/webhooks): الرفض الذي يُجاب به بصيغة تفاصيل المشكلة (RFC 9457)
# أو OperationOutcome في FHIR، وما ترفضه قراءة رسائل الجهات (crates/connect وconnectors/*).
# يسبق اسمُ الحقل نصَّ رفض الرسالة؛ ولا يقتبس أي نص قيمة أرسلتها الجهة.

# عنوان المشكلة: معنى حالة HTTP.
problem-title-400 = طلب غير صالح
problem-title-401 = لم يُتحقق من هوية المرسل
problem-title-403 = غير مسموح
problem-title-404 = غير موجود
problem-title-408 = انتهت مهلة الطلب
problem-title-409 = تعارض
problem-title-413 = حجم الطلب أكبر من المسموح
problem-title-422 = محتوى غير مقبول
problem-title-429 = طلبات كثيرة
problem-title-502 = تعذرت معالجة الطلب
problem-title-503 = الخدمة غير متاحة مؤقتًا
problem-title-other = تعذرت معالجة الطلب

# استدعاء الخطاف نفسه.
webhook-unauthenticated = أرسل رمز الجهة الخاص بالخطافات في `Authorization: Bearer <token>`
webhook-wrong-route = هذه الجهة تتحدث `{ $protocol }`؛ المسار `{ $route }` مخصص لأنظمة { $expected }
webhook-agency-id-invalid = معرّف الجهة في المسار غير صالح
webhook-body-too-large = حجم الطلب أكبر من الحد المقبول ({ $max } بايت)
webhook-body-timeout = لم يصل محتوى الطلب خلال { $ms } ميلي ثانية
webhook-body-unreadable = تعذرت قراءة محتوى الطلب (انتهى قبل طوله المعلن أو انقطع الاتصال)
webhook-not-utf8 = محتوى الطلب ليس نصًا بترميز UTF-8 (أول بايت غير صالح عند { $at })
webhook-not-json = محتوى الطلب ليس JSON صالحًا (السطر { $line }، العمود { $column })
webhook-message-id-reused = رقم الرسالة هذا استُخدم من قبل لرسالة مختلفة؛ أعطِ كل رسالة جديدة رقمًا خاصًا بها (تكرار الرسالة نفسها يُجاب عنه كما أُجيب في المرة الأولى)
webhook-referral-kept-changing = ظلت الإحالة تتغير أثناء تطبيق هذا؛ أعد الإرسال
webhook-cannot-take-now = تعذر على المنصة استلام هذا الآن؛ أعد الإرسال لاحقًا بنفس رقم الرسالة
webhook-could-not-take = تعذر على المنصة استلام هذا الآن؛ أعد الإرسال لاحقًا بنفس رقم الرسالة
webhook-hub-busy = المنصة مشغولة الآن؛ أعد الإرسال لاحقًا بنفس رقم الرسالة

# أي رسالة: ما الخطأ في حقل واحد.
inbound-required = حقل مطلوب
inbound-not-string = يجب أن يكون نصًا
inbound-not-object = يجب أن يكون كائن JSON
inbound-not-date = يجب أن يكون تاريخًا بالصيغة YYYY-MM-DD
inbound-not-rfc3339-time = يجب أن يكون وقتًا بصيغة RFC 3339
inbound-not-list-of-strings = يجب أن يكون قائمة من النصوص
inbound-not-one-of = ليس من القيم المقبولة: { $choices }
inbound-length = يجب أن يكون طوله من 1 إلى { $max ->
        [one] حرف واحد
        [two] حرفين
        [few] { $max } أحرف
        [many] { $max } حرفًا
       *[other] { $max } حرف
    }
inbound-id-characters = يجب أن يتكون من 1 إلى { $max ->
        [one] حرف واحد
        [two] حرفين
        [few] { $max } أحرف
        [many] { $max } حرفًا
       *[other] { $max } حرف
    } من A-Z وa-z و0-9 و- _ . : فقط
# إحالة بالبنية الموحدة للمنصة (المدارس، خط الطوارئ) تُقرأ بـ serde: يُذكر نوع المشكلة
# فقط، ولا تُنقل كلمات serde نفسها.
inbound-wrong-type-or-vocabulary = أحد الحقول من نوع خاطئ أو قيمته ليست من القيم المقبولة
inbound-not-expected-shape = ليس كائن JSON بالبنية المتوقعة

# مورد Task من جهة صحية (FHIR).
inbound-not-a-fhir-task = المتوقع مورد FHIR من نوع Task؛ أرسل الموارد الأخرى إلى مسار آخر
inbound-task-status-without-meaning = ليس لهذه الحالة معنى في الإحالة؛ أرسل إحدى القيم: requested، received، accepted، ready، rejected، in-progress، completed، failed، cancelled
inbound-task-status-reason-required = مطلوب (نص أو ترميز) عند رفض الإحالة أو فشلها أو إلغائها
inbound-task-based-on = يجب أن يحتوي على معرّف (identifier) نظامه { $system } وقيمته معرّف srv_ لطلب الخدمة (ServiceRequest) الذي أرسلناه

# حالة الإحالة لدى جهة العدالة.
inbound-justice-referral-ref-not-srv = يجب أن يكون معرّف srv_ الذي أُرسلت به الإحالة
inbound-justice-reason-code-required = مطلوب عند رفض الإحالة أو سحبها

# حالات مديرية تعمل بـ Primero وردودها وصفحاتها.
inbound-primero-sex-not-known = ليس من القيم المقبولة: female، male، unknown
inbound-primero-age-not-a-child = يجب أن يكون عددًا صحيحًا من السنوات أقل من 18
inbound-primero-concern-unknown = ليس من أنواع مخاوف الحماية التي تعرفها المنصة
inbound-primero-risk-not-known = ليس من القيم المقبولة: high، medium، low
inbound-primero-service-unknown = ليس من أنواع الخدمات التي تعرفها المنصة
inbound-primero-referral-id-not-srv = يجب أن يكون معرّف srv_ الذي أرسلته المنصة
inbound-primero-answer-status-not-known = ليس من القيم المقبولة: in_progress، accepted، rejected، done
inbound-primero-rejected-reason-required = مطلوب عند الرفض
inbound-primero-page-without-data = يجب أن تحتوي صفحة الحالات على قائمة `data`
