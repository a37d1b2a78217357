# الدليل: الجهات وخريطة الخدمات.

directory-agency-not-found = لا توجد جهة `{ $agency_id }` في الدليل
directory-service-not-found = لا توجد خدمة { $service_id } على الخريطة
directory-service-not-yours = الخدمة { $service_id } تابعة للجهة `{ $agency_id }`؛ لا تغيّر الجهة إلا خدماتها
directory-service-stale = الخدمة { $service_id } في الإصدار { $current } وليس { $expected }: أعد تحميلها ثم حاول مجددًا
directory-service-changed = تغيّرت الخدمة { $service_id } في الأثناء: أعد تحميلها ثم حاول مجددًا
directory-service-removed = الخدمة { $service_id } محذوفة من الخريطة بالفعل
directory-not-administrator = لا يغيّر جهات الدليل إلا مشرفو المنصة (جهة شؤون اجتماعية تغطي كل المحافظات)
directory-agency-exists = الجهة `{ $agency_id }` موجودة في الدليل بالإصدار { $current }: لتعديلها أرسل آخر إصدار رأيته في expected_version
directory-agency-stale = الجهة `{ $agency_id }` في الإصدار { $current } وليس { $expected }: أعد تحميلها ثم حاول مجددًا
directory-agency-gone = حُذفت الجهة `{ $agency_id }` من الدليل: لإعادتها أضفها من جديد عبر PutAgency (expected_version { $current })
directory-agency-self = لا يستطيع المشرف إيقاف جهته أو حذفها: يجب أن يفعل ذلك مشرف آخر
enrolment-no-issuer = هذه المنصة لا تصدر الشهادات (grpc.issuer غير مضبوط): تحصل على شهادتك من مشغلي المنصة
enrolment-code-refused = رمز التسجيل غير صالح لهذه الجهة: ربما كُتب خطأ أو استُخدم أو انتهت صلاحيته أو استُبدل برمز أحدث؛ اطلب رمزًا جديدًا من مشرفي المنصة
certificate-not-found = لم تصدر المنصة شهادة بهذه البصمة (ListCertificates يعرض شهادات الجهة)
