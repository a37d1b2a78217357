# البوابة: من المتصل، وما الذي تسمح به جهته ودوره.

caller-unidentified = حدّد الجهة المتصلة (x-himaya-agency، أو `--as` في سطر الأوامر)
caller-unknown = x-himaya-agency: الجهة المذكورة غير مسجلة في الدليل
gateway-no-certificate = قدّم شهادة جهتك (TLS متبادل؛ `--certs` في سطر الأوامر)
gateway-web-names-no-agency = x-himaya-agency: يجب أن يحدد مكون الويب جهة من الدليل
gateway-web-names-no-person = x-himaya-person: يجب أن يحدد مكون الويب الشخص الذي يتصرف
gateway-certificate-unreadable = تعذرت قراءة شهادة العميل
gateway-certificate-wildcard = تسمي الشهادة الجهات بحرف بدل؛ يجب أن تسمي جهة واحدة بالضبط
gateway-certificate-not-one-agency = يجب أن تسمي الشهادة جهة واحدة بالضبط من الدليل
gateway-certificate-not-the-claimed = الشهادة المقدّمة ليست شهادة الجهة المذكورة في x-himaya-agency (يجب أن تسمي <agency id>.agency.himaya)
gateway-agency-type-may-not-call = لا يحق لجهات من نوع { $agency_type } استدعاء { $rpc }
gateway-systems-only = { $rpc } مخصص لأنظمة الجهات لا للأشخاص
gateway-role-may-not-call = لا يسمح دورك باستدعاء { $rpc }؛ هو مسموح لأدوار: { $roles }
gateway-undecodable = الطلب ليس رسالة صالحة من نوع هذه العملية (protocol buffers): تأكد من أن العميل يستخدم ملفات .proto الحالية للمنصة
gateway-too-large = الطلب أكبر من الحد المسموح لعملية واحدة ({ $max } بايت، grpc.max_message_bytes): اختصر الحقول النصية الطويلة أو القوائم
gateway-busy = بلغت المنصة حدها لهذا النوع من الطلبات الآن؛ أعد الإرسال بعد { $retry_after_ms } ملي ثانية بالقيمة نفسها في submission_id (لم يُحفظ شيء)
gateway-timeout = لم تكتمل العملية خلال { $timeout_ms } ملي ثانية (limits.request_timeout_ms) فأُلغيت؛ أعد الإرسال بالقيمة نفسها في submission_id (الإحالة التي استلمتها المنصة من قبل يُجاب عنها كما كانت، ولا تُستلم مرتين)
gateway-agency-suspended = أوقف مشرفو المنصة وصول هذه الجهة: اطلب منهم إعادة تفعيله
gateway-certificate-revoked = ألغى مشرفو المنصة هذه الشهادة: سجّل من جديد أو استخدم شهادتك المجددة
